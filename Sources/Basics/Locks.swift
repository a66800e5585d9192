import Glibc

// The house locks, over pthreads rather than `Synchronization.Mutex` so that ThreadSanitizer sees the locking (the
// standard library's futex-based Mutex is not instrumented, and every access under it is then reported as a race).
// Lock order, outermost first (Docs/ARCHITECTURE.md): event loop → pool thread → namespace lock → in-memory tables →
// sidecar queue; a lock is never taken while one further down the list is held.

/// A value behind a mutex. `@unchecked Sendable`: `mutex` protects `value`.
public final class Locked<Value: Sendable>: @unchecked Sendable {
    @usableFromInline let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    @usableFromInline var value: Value

    public init(_ value: Value) {
        self.value = value
        self.mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(self.mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    @inlinable
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.value)
    }

    /// A copy of the value, read without an `inout` access. Read stored closures (hooks, metric sources) this way: a
    /// build that does not specialise `withLock` re-abstracts a function value on its way into the generic `inout`
    /// and again on its way back, and stores the wrapped function, so every `withLock { $0 }` of a closure added two
    /// thunks to it; a test hook read at every flush grew into a chain that overflowed a thread's stack.
    @inlinable
    public var current: Value {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return self.value
    }
}

/// A reader-writer lock. `@unchecked Sendable`: the pthread lock is the synchronisation.
///
/// Writer-preferring: a steady stream of readers (READs from a pool of threads, calls looking up their export) must
/// not starve a writer (a CREATE, a reload). Read locks are therefore never taken recursively: a waiting writer would
/// deadlock a nested reader.
public final class RWLock: @unchecked Sendable {
    @usableFromInline let lock: UnsafeMutablePointer<pthread_rwlock_t>

    public init() {
        self.lock = .allocate(capacity: 1)
        self.lock.initialize(to: pthread_rwlock_t())
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, CInt(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        let status = pthread_rwlock_init(self.lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
        precondition(status == 0, "pthread_rwlock_init failed: \(status)")
    }

    deinit {
        pthread_rwlock_destroy(self.lock)
        self.lock.deallocate()
    }

    @inlinable
    public func withReadLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_rdlock(self.lock)
        defer { pthread_rwlock_unlock(self.lock) }
        return try body()
    }

    @inlinable
    public func withWriteLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_wrlock(self.lock)
        defer { pthread_rwlock_unlock(self.lock) }
        return try body()
    }

    /// Runs `body` under the read lock if it can be had at once (no writer holds or awaits it); nil otherwise. For
    /// callers that must not wait (an event loop answering from the caches).
    @inlinable
    public func withReadLockIfFree<T>(_ body: () -> T?) -> T? {
        guard pthread_rwlock_tryrdlock(self.lock) == 0 else { return nil }
        defer { pthread_rwlock_unlock(self.lock) }
        return body()
    }

    /// Runs `body` under the read lock if it can be had at once; throws `refusal` otherwise (a caller that must not
    /// wait, answering more than the caches know).
    @inlinable
    public func withReadLockIfFree<T, E: Error>(
        orThrow refusal: () -> E, _ body: () throws(E) -> T
    ) throws(E) -> T {
        guard pthread_rwlock_tryrdlock(self.lock) == 0 else { throw refusal() }
        defer { pthread_rwlock_unlock(self.lock) }
        return try body()
    }

    /// Tests: takes the write lock if it is free right now (release with `unlockWrite`).
    public func tryWriteLock() -> Bool { pthread_rwlock_trywrlock(self.lock) == 0 }

    public func unlockWrite() { pthread_rwlock_unlock(self.lock) }
}

/// A value behind an `RWLock`: readers share it, writers have it alone.
public final class ReadWriteLocked<Value>: @unchecked Sendable {
    // The value lives in memory of its own, protected by `lock`. A class's stored property would be copied (every
    // field retained and released) to hand it to a reader: Swift cannot lend a class property across a call. The
    // export registry's state is read this way by every call, and that copy was a few per cent of an inline GETATTR.
    @usableFromInline let lock = RWLock()
    @usableFromInline let storage: UnsafeMutablePointer<Value>

    public init(_ value: Value) {
        self.storage = .allocate(capacity: 1)
        self.storage.initialize(to: value)
    }

    deinit {
        self.storage.deinitialize(count: 1)
        self.storage.deallocate()
    }

    /// Runs `body` with exclusive access.
    @inlinable
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        try self.lock.withWriteLock { () throws(E) -> R in try body(&self.storage.pointee) }
    }

    /// Runs `body` with shared access: other readers run at the same time. The value is lent, not copied.
    @inlinable
    public func withReadLock<R, E: Error>(_ body: (Value) throws(E) -> R) throws(E) -> R {
        try self.lock.withReadLock { () throws(E) -> R in try Self.lend(&self.storage.pointee, body) }
    }

    /// Passes `value` on without copying it: an `inout` argument is lent for the whole call. Nothing writes it.
    @inlinable @inline(__always)
    static func lend<R, E: Error>(_ value: inout Value, _ body: (Value) throws(E) -> R) throws(E) -> R {
        try body(value)
    }
}
