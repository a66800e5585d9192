import Glibc

/// Calls made for a thread that must not sleep: an event loop answering a read-only call itself, where handing it to
/// a pool thread and its reply back costs two thread hops (two wake-ups, each a context switch on both sides) that
/// cost more than a LOOKUP or GETATTR whose object is not cached yet. Such a call may make system calls on a
/// page-cache-hot file system, but it must never wait on a lock a change holds, on a flush, or on the sidecar's
/// database (a flush holds it through its `syncfs`).
///
/// `attempt` runs the caller's whole call with this thread marked. Each step that would sleep checks the mark
/// (`refuse`) and, instead of sleeping, fails with `UnionError.wouldWait`; `attempt` then answers nil whatever the body
/// made of that error, and the caller runs the call again on a thread that may wait. A step refuses before it changes
/// anything (the namespace lock is tried, a fileid that needs a durable row is not allocated), so the second run finds
/// what the first would have found. The last line of defence (a flush or the database reached anyway) refuses after
/// memory may show a queued record, which is the state a failed flush leaves: the records stay queued for the next
/// flush.
public enum NoWaiting {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    // The thread's state, as the key's value: nil outside an attempt, `active` inside one, `refused` once a step
    // refused (no allocation: an attempt is a handful of instructions around the call it wraps).
    private static var active: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: 1) }
    private static var refused: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: 2) }

    /// Runs `body` on this thread as a caller that must not wait: its result, or nil when a step refused to wait (run
    /// the call again where waiting is allowed). Not nested.
    public static func attempt<T>(_ body: () -> T) -> T? {
        pthread_setspecific(Self.key, Self.active)
        let result = body()
        let state = pthread_getspecific(Self.key)
        pthread_setspecific(Self.key, nil)
        return state == Self.refused ? nil : result
    }

    /// Makes the running `attempt` answer nil: for the caller's own steps that would wait (a file handle whose
    /// namespace is not open yet).
    public static func decline() {
        if Self.isActive { pthread_setspecific(Self.key, Self.refused) }
    }

    /// Whether the calling thread runs an `attempt`.
    static var isActive: Bool { pthread_getspecific(Self.key) != nil }

    /// The error a step that would wait throws inside an `attempt` (which then answers nil).
    static func refuse() -> UnionError {
        pthread_setspecific(Self.key, Self.refused)
        return .wouldWait
    }
}
