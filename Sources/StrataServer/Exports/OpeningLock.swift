import Basics
import Foundation

/// Serialises the opening of namespaces per namespace, not across all of them.
///
/// Why per namespace: opening a client's namespace for the first time creates its upper layer
/// and its sidecar, a few disk flushes. When a room of diskless clients powers on, every client's
/// first MNT opens one; opened one at a time, the 200th client waited for 199 opens before its
/// first call (seconds on a busy disk). Opens of different namespaces share nothing they could
/// race on: each has its own upper (sidecar, `work/`), lowers are opened read-only, and the
/// upper-less namespace of a version is one key. Two opens of the same namespace still run one
/// after the other (they would race on its sidecar and its `work/` cleanup). The keys being
/// opened are kept in a set: an open waits only for an open of its own key (a fixed set of
/// stripes, as before, made 200 clients' opens wait for the unrelated ones sharing their stripe).
///
/// Reload, a client reset, an image move and gc take namespaces out of the table and must not
/// see one being opened meanwhile: they hold the lock `exclusively`, which waits for the opens
/// running and holds new ones off. The gate is writer-preferring, so a stream of opens does not
/// starve them.
final class OpeningLock: @unchecked Sendable {
    private let gate = RWLock()
    // `opening` is protected by `condition`.
    private let condition = NSCondition()
    private var opening: Set<AnyHashable> = []

    /// Runs `body` as the only open of `key`, beside opens of other keys.
    func opening<Key: Hashable, T, E: Error>(_ key: Key, _ body: () throws(E) -> T) throws(E) -> T {
        let key = AnyHashable(key)
        // The gate first: an open waiting here for its key holds no slot an exclusive holder waits for.
        return try self.gate.withReadLock { () throws(E) -> T in
            self.condition.lock()
            while self.opening.contains(key) { self.condition.wait() }
            self.opening.insert(key)
            self.condition.unlock()
            defer {
                self.condition.lock()
                self.opening.remove(key)
                self.condition.broadcast()
                self.condition.unlock()
            }
            return try body()
        }
    }

    /// Opens running now (tests).
    var runningCount: Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.opening.count
    }

    /// Runs `body` while no namespace is being opened.
    func exclusively<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try self.gate.withWriteLock(body)
    }
}
