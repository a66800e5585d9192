import Glibc
import NFS3
import NIOCore
import Synchronization
import XDR

/// Whether the event loop answers the read-only calls its caches cannot (`NFS3Program.handleInline`): the first
/// LOOKUP of a name in a namespace, the first GETATTR of an object, a listing. Handing such a call to a pool thread and
/// its reply back costs two thread hops (a wake-up on each side), more than the call itself when the file system's
/// metadata is in memory (Docs/REQUEST-PATH.md).
///
/// The risk is a cold cache: a `stat` that reads the disk holds every connection of that event loop meanwhile, where
/// the pool's threads would read in parallel. So an answer during which the thread read from the disk (its
/// `ru_inblock` grew) sends these calls back to the pool for `pauseNanoseconds`; they return when the pause ends, to
/// find out whether the cache is warm again. Not the time a call took: on a busy host an event loop is preempted for
/// milliseconds without any disk read, and that said nothing about the cache.
public final class InlineMisses: Sendable {
    let pauseNanoseconds: UInt64
    /// CLOCK_MONOTONIC nanoseconds until which misses go to the pool.
    private let pausedUntil = Atomic<UInt64>(0)
    /// Misses answered here, refused by a step that would have waited (run on the pool), and pauses begun.
    let answered = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    let pauses = Atomic<Int>(0)

    /// Where the counts are exported too (`strata_nfs_inline_misses_total`, `strata_nfs_inline_miss_pauses_total`).
    let metrics: ServerMetrics?

    /// The blocks the calling thread has read from disks so far (`threadBlocksRead`; tests pass their own).
    let blocksRead: @Sendable () -> Int

    public convenience init(metrics: ServerMetrics? = nil) {
        self.init(pauseNanoseconds: 1_000_000_000, metrics: metrics, blocksRead: Self.threadBlocksRead)
    }

    init(pauseNanoseconds: UInt64, metrics: ServerMetrics? = nil, blocksRead: @escaping @Sendable () -> Int) {
        self.pauseNanoseconds = pauseNanoseconds
        self.metrics = metrics
        self.blocksRead = blocksRead
    }

    /// The procedures answered this way: those that only read and never wait for a flush (a READ whose data is not
    /// all in the page cache refuses: `NoWaiting`). No change is.
    static func mayAnswer(_ procedure: NFS3Procedure) -> Bool {
        switch procedure {
        case .getattr, .lookup, .access, .readlink, .read, .readdir, .readdirplus, .fsstat, .fsinfo, .pathconf: true
        default: false
        }
    }

    /// The largest listing page answered this way: what the server offers as its preferred size (FSINFO dtpref) and
    /// the Linux client asks for. A page costs a `stat` and an encoded entry per name (a 64 KiB page, a few hundred
    /// names: under a millisecond of CPU); a client asking for 1 MiB pages would hold the event loop's other
    /// connections many times longer, so those go to the pool.
    static let maxListingBytes: UInt32 = 64 << 10

    /// Whether the call's work is small enough for the event loop: a listing page of at most `maxListingBytes` (bad
    /// arguments are the pool's to answer).
    static func isSmallEnough(_ procedure: NFS3Procedure, _ arguments: ByteBuffer) -> Bool {
        var arguments = arguments
        switch procedure {
        case .readdirplus:
            guard let args = try? ReadDirPlus3Args(xdr: &arguments) else { return false }
            return args.maxcount <= Self.maxListingBytes
        case .readdir:
            guard let args = try? ReadDir3Args(xdr: &arguments) else { return false }
            return args.count <= Self.maxListingBytes
        default:
            return true
        }
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// The blocks the calling thread has read from disks so far (`ru_inblock`: the reads it submitted).
    static func threadBlocksRead() -> Int {
        var usage = rusage()
        // RUSAGE_THREAD (1): Glibc exports it only under _GNU_SOURCE.
        guard getrusage(__rusage_who_t(1), &usage) == 0 else { return 0 }
        return usage.ru_inblock
    }

    /// Runs `attempt` (a miss answered on this thread, nil when it refused to wait) unless misses are paused: its
    /// answer, or nil.
    func answer<T>(_ attempt: () -> T?) -> T? {
        guard Self.now() >= self.pausedUntil.load(ordering: .relaxed) else { return nil }
        let before = self.blocksRead()
        let answer = attempt()
        if self.blocksRead() != before {
            self.pausedUntil.store(Self.now() &+ self.pauseNanoseconds, ordering: .relaxed)
            self.pauses.add(1, ordering: .relaxed)
            self.metrics?.inlineMissPauses.increment()
        }
        if answer == nil {
            self.refused.add(1, ordering: .relaxed)
            self.metrics?.inlineMissesRefused.increment()
        } else {
            self.answered.add(1, ordering: .relaxed)
            self.metrics?.inlineMissesAnswered.increment()
        }
        return answer
    }
}
