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

/// How a namespace's changes ran since it was opened (Prometheus: `strata_namespace_changes_total`,
/// `strata_namespace_change_lock_wait_seconds_total`, `strata_namespace_change_lock_held_seconds_total`,
/// `strata_group_commit_flushes_total`, `strata_group_commit_changes_total`, `strata_group_commit_flush_seconds_total`,
/// `strata_group_commit_sync_seconds_total`, `strata_group_commit_gather_seconds_total`).
/// Where a change's time goes: waiting for the namespace write lock (other changes of the namespace hold it), holding
/// it (the checks and file system steps, `Docs/CRASH-ORDER.md`), and waiting for the flush that makes it durable.
/// Divided, they give the mean lock wait and hold per change, the mean batch (changes per flush) and the mean flush.
/// Totals only grow, and start at 0 with each `UnionNamespace`.
public struct ChangeStatistics: Sendable, Equatable {
    /// Changes run under the namespace write lock (failed ones too: they held it).
    public var changes: UInt64 = 0
    /// Nanoseconds the changes waited for the write lock.
    public var lockWaitNanoseconds: UInt64 = 0
    /// Nanoseconds the changes held it.
    public var lockHeldNanoseconds: UInt64 = 0
    /// Group-commit flushes of the namespace's upper (failed ones too).
    public var flushes: UInt64 = 0
    /// Changes those flushes made durable (a change is counted once, with the batch that committed it).
    public var flushedChanges: UInt64 = 0
    /// Nanoseconds the flushes took: the sidecar transaction and the syncs of the batch.
    public var flushNanoseconds: UInt64 = 0
    /// Nanoseconds of `flushNanoseconds` spent in the syncs that follow the sidecar transaction (the file system's,
    /// the WAL's, the changed objects'); the rest is the transaction (its records, and SQLite's own checkpoints). On a
    /// host short of CPU, a `syncfs` waits for the kernel's writeback worker to get a core (Docs/CRASH-ORDER.md).
    public var flushSyncNanoseconds: UInt64 = 0
    /// Nanoseconds the flushes' leaders waited, before them, for the changes running then to join their batches (not
    /// part of `flushNanoseconds`; Docs/CRASH-ORDER.md, "A flush gathers the changes running when it would start").
    public var flushGatherNanoseconds: UInt64 = 0

    public init() {}

    public mutating func add(_ other: ChangeStatistics) {
        self.changes &+= other.changes
        self.lockWaitNanoseconds &+= other.lockWaitNanoseconds
        self.lockHeldNanoseconds &+= other.lockHeldNanoseconds
        self.flushes &+= other.flushes
        self.flushedChanges &+= other.flushedChanges
        self.flushNanoseconds &+= other.flushNanoseconds
        self.flushSyncNanoseconds &+= other.flushSyncNanoseconds
        self.flushGatherNanoseconds &+= other.flushGatherNanoseconds
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
    /// Inodes of new regular files made before the namespace write lock (`PreparedFiles.swift`), and those a CREATE
    /// took (tests check that a CREATE makes its inode outside the lock, and that one it did not take is kept).
    let preparedFiles = Atomic<UInt64>(0)
    let preparedFilesTaken = Atomic<UInt64>(0)
    /// `ChangeStatistics`: changes, and their nanoseconds waiting for and holding the namespace write lock.
    let changes = Atomic<UInt64>(0)
    let changeLockWait = Atomic<UInt64>(0)
    let changeLockHeld = Atomic<UInt64>(0)

    func changed(waited: UInt64, held: UInt64) {
        self.changes.add(1, ordering: .relaxed)
        self.changeLockWait.add(waited, ordering: .relaxed)
        self.changeLockHeld.add(held, ordering: .relaxed)
    }

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

    /// How this namespace's changes ran since it was opened (see `ChangeStatistics`). Cheap (three atomic loads and
    /// the group commit's lock); it keeps its last values after `close()`.
    public var changeStatistics: ChangeStatistics {
        var result = ChangeStatistics()
        result.changes = self.stats.changes.load(ordering: .relaxed)
        result.lockWaitNanoseconds = self.stats.changeLockWait.load(ordering: .relaxed)
        result.lockHeldNanoseconds = self.stats.changeLockHeld.load(ordering: .relaxed)
        let flushed = self.identities.commits.flushTotals
        result.flushes = flushed.flushes
        result.flushedChanges = flushed.changes
        result.flushNanoseconds = flushed.nanoseconds
        result.flushGatherNanoseconds = flushed.gatherNanoseconds
        result.flushSyncNanoseconds = self.identities.sidecar.syncNanoseconds.load(ordering: .relaxed)
        return result
    }
}
