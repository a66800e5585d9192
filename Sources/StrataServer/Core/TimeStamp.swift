import Glibc
import Synchronization

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
