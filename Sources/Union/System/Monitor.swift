import Glibc

/// A mutex with one condition variable, for the waits where a caller sleeps until another thread finished shared work
/// (a group commit's flush, a shared fsync). `@unchecked Sendable`: the pthread objects are the synchronisation.
final class Monitor: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        self.mutex.initialize(to: pthread_mutex_t())
        self.condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(self.mutex, nil)
        pthread_cond_init(self.condition, nil)
    }

    deinit {
        pthread_cond_destroy(self.condition)
        pthread_mutex_destroy(self.mutex)
        self.condition.deallocate()
        self.mutex.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(self.mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(self.mutex) }
    /// `body` with the mutex held (a read of the state it protects).
    @inline(__always) func withLock<T>(_ body: () -> T) -> T {
        self.lock()
        defer { self.unlock() }
        return body()
    }
    /// Releases the mutex while asleep; holds it again on return. Callers re-check their condition.
    @inline(__always) func wait() { pthread_cond_wait(self.condition, self.mutex) }
    @inline(__always) func broadcast() { pthread_cond_broadcast(self.condition) }
    /// Sleeps on `sleeper`'s own condition (woken alone by `sleeper.signal()`), with the same mutex.
    @inline(__always) func wait(_ sleeper: Sleeper) { pthread_cond_wait(sleeper.condition, self.mutex) }
    /// As `wait(_:)`, until `deadline` (`Monotonic.nanoseconds()`) at the latest; false once it has passed.
    func wait(_ sleeper: Sleeper, until deadline: UInt64) -> Bool {
        var at = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(sleeper.condition, self.mutex, &at) != ETIMEDOUT
    }
}

/// A condition of one waiter of a `Monitor`: waking it wakes no other (see `GroupCommit`). Signal it with the monitor
/// locked. `@unchecked Sendable`: the pthread condition is the synchronisation.
final class Sleeper: @unchecked Sendable {
    fileprivate let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        self.condition.initialize(to: pthread_cond_t())
        // Timed waits (`Monitor.wait(_:until:)`) count on the monotonic clock, as `Monotonic` does.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(self.condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(self.condition)
        self.condition.deallocate()
    }

    @inline(__always) func signal() { pthread_cond_signal(self.condition) }
}
