import Glibc
import Synchronization

/// A reader-writer lock over `pthread_rwlock_t`. `@unchecked Sendable`: the pthread lock is the synchronisation.
///
/// Writer-preferring: a steady stream of READs from a pool of threads must not starve a CREATE. Read locks are
/// therefore never taken recursively (a waiting writer would deadlock a nested reader).
final class RWLock: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        self.lock = .allocate(capacity: 1)
        self.lock.initialize(to: pthread_rwlock_t())
        var attr = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attr)
        pthread_rwlockattr_setkind_np(&attr, CInt(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(self.lock, &attr)
        pthread_rwlockattr_destroy(&attr)
    }

    deinit {
        pthread_rwlock_destroy(self.lock)
        self.lock.deallocate()
    }

    @inline(__always)
    func withReadLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_rdlock(self.lock)
        defer { pthread_rwlock_unlock(self.lock) }
        return try body()
    }

    /// Runs `body` under the read lock if it can be had at once (no writer holds or awaits it); nil otherwise. For
    /// callers that must not wait (an event loop answering from the caches).
    @inline(__always)
    func withReadLockIfFree<T>(_ body: () -> T?) -> T? {
        guard pthread_rwlock_tryrdlock(self.lock) == 0 else { return nil }
        defer { pthread_rwlock_unlock(self.lock) }
        return body()
    }

    /// Tests: takes the write lock if it is free right now (release with `unlockWrite`).
    func tryWriteLock() -> Bool { pthread_rwlock_trywrlock(self.lock) == 0 }

    func unlockWrite() { pthread_rwlock_unlock(self.lock) }

    @inline(__always)
    func withWriteLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_wrlock(self.lock)
        defer { pthread_rwlock_unlock(self.lock) }
        return try body()
    }
}

/// One stripe of a striped lock set.
final class StripeLock: Sendable {
    let lock = Locked(())
}
