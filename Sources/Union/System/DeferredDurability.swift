import Basics
import Glibc

/// Namespace changes whose caller does not sleep until they are durable: the host runs a call inside `deferring`, and
/// instead of waiting for its group commit's flush (`UnionNamespace.mutate`) the changes hand back what they wait
/// for. The host holds the call's reply until `PendingDurability.whenDurable` says the flush covered it, and runs
/// other calls meanwhile.
///
/// Why: a change waiting on its flush costs a sleep and a wake-up of its thread per call (a fifth of a REMOVE's CPU
/// went to scheduling and futexes); held replies are released together by the flush's end, and the thread that made
/// the change takes the next call instead of sleeping.
///
/// Only a change that succeeded is deferred: a failed one (which may have undone half a step) waits as before.
public enum DeferredDurability {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// What the changes of one `deferring` call queued, by group commit.
    final class Collector {
        var pending: [(commits: GroupCommit<SidecarRecord>, seq: UInt64)] = []

        func add(_ commits: GroupCommit<SidecarRecord>, _ seq: UInt64) {
            if let index = self.pending.firstIndex(where: { $0.commits === commits }) {
                self.pending[index].seq = max(self.pending[index].seq, seq)
            } else {
                self.pending.append((commits, seq))
            }
        }
    }

    /// The collector of the `deferring` call running on this thread, if any.
    static var current: Collector? {
        guard let pointer = pthread_getspecific(Self.key) else { return nil }
        return Unmanaged<Collector>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Runs `body` (one call of the host) with its namespace changes not waiting for their flushes; returns what the
    /// caller must wait for before it reports them (nil: nothing, everything it changed is durable already).
    public static func deferring<T>(_ body: () -> T) -> (T, PendingDurability?) {
        let collector = Collector()
        let outer = pthread_getspecific(Self.key)
        pthread_setspecific(Self.key, Unmanaged.passUnretained(collector).toOpaque())
        let result = withExtendedLifetime(collector) { body() }
        pthread_setspecific(Self.key, outer)
        guard !collector.pending.isEmpty else { return (result, nil) }
        return (result, PendingDurability(pending: collector.pending))
    }
}

/// The flushes a call's reply waits for (`DeferredDurability.deferring`).
public struct PendingDurability: @unchecked Sendable {
    // `@unchecked`: GroupCommit is thread-safe; the array is never mutated after `deferring` returns.
    fileprivate let pending: [(commits: GroupCommit<SidecarRecord>, seq: UInt64)]

    fileprivate init(pending: [(commits: GroupCommit<SidecarRecord>, seq: UInt64)]) {
        self.pending = pending
    }

    /// Calls `done` once: with nil when every change is durable, or with the error of a flush that failed to make one
    /// so (the change stays queued and a later flush retries it, but this caller must report a failure). Called at
    /// once, or on the thread of the flush that decided it.
    public func whenDurable(_ done: @escaping @Sendable (UnionError?) -> Void) {
        guard self.pending.count > 1 else {
            let only = self.pending[0]
            return only.commits.whenDurable(only.seq, done)
        }
        // Rare (a call spanning two group commits): the first failure is the answer.
        let left = Locked((count: self.pending.count, failure: UnionError?.none))
        for item in self.pending {
            item.commits.whenDurable(item.seq) { error in
                let finished = left.withLock { state -> (Bool, UnionError?) in
                    state.count -= 1
                    if state.failure == nil { state.failure = error }
                    return (state.count == 0, state.failure)
                }
                if finished.0 { done(finished.1) }
            }
        }
    }

    /// Sees to it that a flush covers these changes: unless one runs already (whose end starts the next), leads
    /// flushes on this thread, as a sleep on the disk (`BlockingWaits`), until no deferred change waits any more.
    /// Call it after `whenDurable`, before the thread has nothing else to do.
    public func flush() {
        for item in self.pending {
            item.commits.flushQueued { lead in
                try? BlockingWaits.run { () throws(UnionError) in lead() }
            }
        }
    }
}
