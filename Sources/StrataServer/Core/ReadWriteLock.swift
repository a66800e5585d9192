import Glibc
import Synchronization

/// A value behind a reader-writer lock: readers (every NFS call looking up its export and
/// namespace) do not wait for each other; writers (opens, closes, reload, mounts) are rare.
///
/// Writers are preferred, so a steady stream of calls cannot starve a reload or a reset; the
/// lock is therefore not recursive: never take it again, read or write, while holding it.
final class ReadWriteLocked<Value>: @unchecked Sendable {
    // `value` is protected by `lock`.
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    private let value: UnsafeMutablePointer<Value>

    init(_ value: Value) {
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        self.lock = .allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        let status = pthread_rwlock_init(self.lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
        precondition(status == 0, "pthread_rwlock_init failed: \(status)")
    }

    deinit {
        pthread_rwlock_destroy(self.lock)
        self.lock.deallocate()
        self.value.deinitialize(count: 1)
        self.value.deallocate()
    }

    /// Runs `body` with exclusive access.
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_rwlock_wrlock(self.lock)
        defer { pthread_rwlock_unlock(self.lock) }
        return try body(&self.value.pointee)
    }

    /// Runs `body` with shared access: other readers run at the same time.
    func withReadLock<Result, Failure: Error>(_ body: (Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_rwlock_rdlock(self.lock)
        defer { pthread_rwlock_unlock(self.lock) }
        return try body(self.value.pointee)
    }
}

/// A time stamp many threads move forward without a lock (a namespace's last use, a client's
/// last call): each call would otherwise rewrite a shared table under an exclusive lock.
final class TimeStamp: Sendable {
    private let bits: Atomic<UInt64>

    init(_ seconds: Double) {
        self.bits = Atomic(seconds.bitPattern)
    }

    var seconds: Double { Double(bitPattern: self.bits.load(ordering: .relaxed)) }

    /// Moves the stamp to `seconds` if that is at least `granularity` later: stamps only go
    /// forward, and calls in the same instant do not all write the same cache line.
    func advance(to seconds: Double, granularity: Double) {
        var current = self.bits.load(ordering: .relaxed)
        while seconds - Double(bitPattern: current) >= granularity {
            let (exchanged, original) = self.bits.compareExchange(
                expected: current, desired: seconds.bitPattern, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}

/// Seconds since 1970 (CLOCK_REALTIME_COARSE: a client's last call needs no more precision,
/// and every call asks).
func wallClockSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME_COARSE, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
