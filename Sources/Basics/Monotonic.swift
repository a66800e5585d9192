import Glibc

/// CLOCK_MONOTONIC in nanoseconds: cheap (vDSO, no allocation) for timing hot paths such as a namespace change's wait
/// for its lock.
public enum Monotonic {
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
