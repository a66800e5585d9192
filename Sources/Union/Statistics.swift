import Synchronization

/// Counters of what a namespace did to its upper layer since it was opened (for the server's Prometheus metrics:
/// `strata_copy_ups_total`, `strata_copy_up_bytes_total`, `strata_whiteouts_created_total`). They only grow; they
/// start at 0 with each `UnionNamespace` (a restart or a client reset starts over, as Prometheus counters may).
public struct UnionStatistics: Sendable, Equatable {
    /// Completed copy-ups: every object copied from a lower layer into the upper one and published there — the file
    /// a WRITE/SETATTR/LINK/RENAME needed, and each parent directory copied up for it (a WRITE of `a/b/f` whose
    /// directories exist only below counts 3), directories and special files and symlinks alike. Not counted: a
    /// copy discarded because another change won the race, a crash, and linking another name of an already copied-up
    /// hard-linked file from `index/` (nothing is copied).
    public var copyUps: UInt64
    /// Bytes of file data the counted copy-ups copied: the size of each copied regular file (capped by the new size
    /// of a truncating SETATTR, which copies only what stays; holes included, whether the data was reflinked,
    /// `copy_file_range`d or read and written). Directories, symlinks and special files add 0.
    public var copyUpBytes: UInt64
    /// Whiteout records committed: REMOVE, RMDIR, or RENAME away of a name that exists below the upper layer. Not
    /// counted: whiteouts dropped again (a create or rename onto the name), a whiteout that already existed.
    public var whiteoutsCreated: UInt64

    public init(copyUps: UInt64 = 0, copyUpBytes: UInt64 = 0, whiteoutsCreated: UInt64 = 0) {
        self.copyUps = copyUps
        self.copyUpBytes = copyUpBytes
        self.whiteoutsCreated = whiteoutsCreated
    }
}

/// The atomics behind `UnionNamespace.statistics` (relaxed: each counter is exact, but the three are not read at
/// one instant — a copy-up finishing meanwhile may show in one counter and not yet in another).
final class StatisticsCounters: Sendable {
    let copyUps = Atomic<UInt64>(0)
    let copyUpBytes = Atomic<UInt64>(0)
    let whiteoutsCreated = Atomic<UInt64>(0)
    /// Names looked up to resolve handles that were not cached (tests check that resolving a handle after a change
    /// costs a step or two, not a walk from the root).
    let resolutionSteps = Atomic<UInt64>(0)
    /// Data descriptors READ opened (not counted: READs served by a kept one; tests check that they are kept and
    /// given up exactly when the file changes).
    let readDescriptorsOpened = Atomic<UInt64>(0)
    /// READs `readIfCached` declined because some of their data was not in the page cache (tests check the fallback).
    let readsNotCached = Atomic<UInt64>(0)
    /// Listing entries whose handle and attributes a READDIRPLUS page looked up instead of taking them from the
    /// cached listing (tests check what a warm page still costs).
    let listedObjectLookups = Atomic<UInt64>(0)
    /// LOOKUPs answered from the lookup cache (tests check that a repeated LOOKUP is one, and that a change makes the
    /// next one look again).
    let lookupCacheHits = Atomic<UInt64>(0)
    /// Objects whose identity row was lost (a crash before its group commit) found again by their derived fileid
    /// (`rediscover`; tests check that a replied handle survives the loss).
    let rediscoveries = Atomic<UInt64>(0)

    func copiedUp(bytes: UInt64) {
        self.copyUpBytes.add(bytes, ordering: .relaxed)
        self.copyUps.add(1, ordering: .relaxed)
    }

    var snapshot: UnionStatistics {
        UnionStatistics(
            copyUps: self.copyUps.load(ordering: .relaxed), copyUpBytes: self.copyUpBytes.load(ordering: .relaxed),
            whiteoutsCreated: self.whiteoutsCreated.load(ordering: .relaxed))
    }
}

extension UnionNamespace {
    /// What this namespace did since it was opened (see `UnionStatistics`). Thread-safe and cheap (three atomic
    /// loads, no lock): scrape it from any thread, even while changes run; it keeps its last values after `close()`.
    public var statistics: UnionStatistics { self.stats.snapshot }
}
