import Basics

/// Serialises the opening of namespaces per namespace, not across all of them.
///
/// Why per namespace: opening a client's namespace for the first time creates its upper layer
/// and its sidecar, a few disk flushes. When a room of diskless clients powers on, every client's
/// first MNT opens one; opened one at a time, the 200th client waited for 199 opens before its
/// first call (seconds on a busy disk). Opens of different namespaces share nothing they could
/// race on: each has its own upper (sidecar, `work/`), lowers are opened read-only, and the
/// upper-less namespace of a version is one key. Two opens of the same namespace still run one
/// after the other (they would race on its sidecar and its `work/` cleanup), through one of a
/// fixed set of stripes chosen by the key: two keys sharing a stripe only wait for each other.
///
/// Reload, a client reset, an image move and gc take namespaces out of the table and must not
/// see one being opened meanwhile: they hold the lock `exclusively`, which waits for the opens
/// running and holds new ones off. The gate is writer-preferring, so a stream of opens does not
/// starve them.
final class OpeningLock: Sendable {
    private let gate = RWLock()
    private let stripes: [Locked<Void>] = (0..<64).map { _ in Locked(()) }

    /// Runs `body` as the only open of `key`, beside opens of other keys.
    func opening<Key: Hashable, T, E: Error>(_ key: Key, _ body: () throws(E) -> T) throws(E) -> T {
        let stripe = self.stripes[Int(UInt(bitPattern: key.hashValue) % UInt(self.stripes.count))]
        return try self.gate.withReadLock { () throws(E) -> T in
            try stripe.withLock { (_: inout Void) throws(E) -> T in try body() }
        }
    }

    /// Runs `body` while no namespace is being opened.
    func exclusively<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try self.gate.withWriteLock(body)
    }
}
