import Basics

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

    /// Runs `wait` (a sleep on the disk) through the installed hook.
    static func run(_ wait: () throws(UnionError) -> Void) throws(UnionError) {
        guard let hook = Self.installed.withLock({ $0 })?.hook else { return try wait() }
        var failure: UnionError?
        hook {
            do throws(UnionError) { try wait() } catch { failure = error }
        }
        if let failure { throw failure }
    }
}
