/// One writer at a time per file, the others asleep. ext4 (like most file systems) serialises buffered writes of one
/// file on its inode's lock, and a writer waiting for that lock spins while its owner runs (optimistic spinning): a
/// client's concurrent WRITEs of one file (32 in flight, up to 4 pool workers) kept a second core busy spinning for
/// as long as each copy into the page cache took: `rwsem_spin_on_owner` was 16 % of the server's CPU in a FILE_SYNC
/// write run. Behind this gate the waiters sleep (a futex) and the owner hands the file to the first of them when it
/// is done; writers of other files never wait for each other (the gate is per file, not per stripe).
///
/// `@unchecked Sendable`: each stripe's monitor protects its tables.
final class FileWriteGate: @unchecked Sendable {
    private final class Stripe {
        let monitor = Monitor()
        /// Files being written, each with its waiters in arrival order.
        var writing: [UInt64: [Sleeper]] = [:]
    }

    private let stripes = (0..<16).map { _ in Stripe() }

    /// Runs `body` as the only writer of file `key` (a fileid) through this gate.
    func writing<T, E: Error>(_ key: UInt64, _ body: () throws(E) -> T) throws(E) -> T {
        let stripe = self.stripes[Int(key % UInt64(self.stripes.count))]
        stripe.monitor.lock()
        if stripe.writing[key] == nil {
            stripe.writing[key] = []
        } else {
            // Woken only when the file was handed to this waiter: it is then the writer.
            let sleeper = Sleeper()
            stripe.writing[key]!.append(sleeper)
            var handedOver = false
            while !handedOver {
                stripe.monitor.wait(sleeper)
                handedOver = !(stripe.writing[key]?.contains { $0 === sleeper } ?? false)
            }
        }
        stripe.monitor.unlock()
        defer {
            stripe.monitor.lock()
            if var waiters = stripe.writing[key], !waiters.isEmpty {
                let next = waiters.removeFirst()
                stripe.writing[key] = waiters
                next.signal()
            } else {
                stripe.writing[key] = nil
            }
            stripe.monitor.unlock()
        }
        return try body()
    }

    /// Files being written or waited for now (tests).
    var filesInUse: Int {
        self.stripes.reduce(0) { sum, stripe in sum + stripe.monitor.withLock { stripe.writing.count } }
    }

    /// Writers waiting for `key` now (tests).
    func waiting(_ key: UInt64) -> Int {
        let stripe = self.stripes[Int(key % UInt64(self.stripes.count))]
        return stripe.monitor.withLock { stripe.writing[key]?.count ?? 0 }
    }
}
