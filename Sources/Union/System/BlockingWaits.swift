import Basics
import Glibc

/// Where the union tells its host that the calling thread is about to sleep on the disk (a group commit's flush, a
/// shared fsync), so the host can let another thread take up work meanwhile (a thread pool that bounds the workers
/// of one connection counts a sleeping one as not busy). Group commit only pays when the changes that arrive during a
/// flush are taken up: with a fixed few workers per connection, every batch would hold at most that many changes.
///
/// The union knows nothing of its host: the host installs the hook once at start (the NFS server passes the RPC
/// layer's `RPCWorker.blocking`). Without one, waits simply run.
public enum BlockingWaits {
    public typealias Hook = @Sendable (_ wait: () -> Void) -> Void

    /// Boxed: a closure kept directly in the generic `Locked` is re-wrapped in a reabstraction thunk by every
    /// `withLock` that passes it `inout`, so each read would make the next call one thunk deeper (a profile showed
    /// 40% of the server in those thunks after a few thousand changes).
    private final class Box: Sendable {
        let hook: Hook
        init(_ hook: @escaping Hook) { self.hook = hook }
    }

    private static let installed = Locked<Box?>(nil)

    /// Installs (or removes, with nil) the process's hook.
    public static func install(_ hook: Hook?) {
        let box = hook.map(Box.init)
        Self.installed.withLock { $0 = box }
    }

    /// A hook for the calling thread alone, for the duration of `body`, in place of the process's (tests: installing
    /// one for the process replaced the hook of a server running in another test of the same process, and a server
    /// starting in another test replaced the test's).
    public static func withHook<T>(_ hook: @escaping Hook, _ body: () throws -> T) rethrows -> T {
        let outer = pthread_getspecific(Self.threadKey)
        let box = Box(hook)
        pthread_setspecific(Self.threadKey, Unmanaged.passUnretained(box).toOpaque())
        defer { pthread_setspecific(Self.threadKey, outer) }
        return try withExtendedLifetime(box) { try body() }
    }

    private static let threadKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `wait` (a sleep on the disk) through the calling thread's hook (`withHook`), else the process's.
    static func run(_ wait: () throws(UnionError) -> Void) throws(UnionError) {
        if NoWaiting.isActive { throw NoWaiting.refuse() }
        let hook: Hook
        if let own = pthread_getspecific(Self.threadKey) {
            hook = Unmanaged<Box>.fromOpaque(own).takeUnretainedValue().hook
        } else if let installed = Self.installed.withLock({ $0 })?.hook {
            hook = installed
        } else {
            return try wait()
        }
        var failure: UnionError?
        hook {
            do throws(UnionError) { try wait() } catch { failure = error }
        }
        if let failure { throw failure }
    }
}
