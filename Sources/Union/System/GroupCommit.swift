import Basics
import Foundation
import Glibc

/// What a flush must make durable besides the sidecar records: an object whose inode or directory entries a change
/// altered. Directories are O_PATH descriptors (reopened for the fsync); files are open descriptors.
enum SyncTarget {
    /// A directory whose entries (or own inode) changed.
    case directory(FD, path: String)
    /// An object whose inode changed (a new file or directory, a file whose attributes or link count changed), open
    /// for reading.
    case file(FD, path: String)
    /// A file whose data changed (fdatasync: the sidecar's WAL).
    case data(FD, path: String)
    /// A change no fsync of single objects makes durable (a new symlink or device node, which cannot be opened; a
    /// removal that frees data blocks): where batches fsync each object, the batch syncs the whole file system instead.
    case filesystem(path: String)
}

/// Group commit of a layer's changes, as jbd2 does for ext4: a change is made (in `tree/`, under the namespace lock)
/// and its sidecar records queued in the order the changes were made; the caller then waits, without the namespace
/// lock, until a flush covers it. Every change queued while a flush runs shares the next one: one sidecar
/// transaction and one file system sync for all of them (`Docs/CRASH-ORDER.md`).
///
/// - A change's records are committed in one batch, in queue order; a batch never splits a change.
/// - `afterSync` records are committed only by a later batch than the one that syncs the change's targets (a
///   whiteout may be dropped only once the entry that beats it is durable), and everything queued after them waits
///   behind them, so records are committed in exactly the order the changes were made.
/// - A failing flush fails every waiter of its batch and every waiter behind it (none is acknowledged) and puts the
///   batch back at the head of the queue: memory already shows the changes, so the next flush retries them.
/// - A flush waits, briefly, for the changes running when it would start (`gather`): they join its batch instead of
///   the next one.
///
/// `@unchecked Sendable`: `monitor` protects every mutable field.
final class GroupCommit<Record>: @unchecked Sendable {
    /// One flush: every record of the changes it covers, in the order they were made, and what they altered.
    struct Batch {
        var number: UInt64
        var records: [Record] = []
        var syncs: [SyncTarget] = []
    }

    private struct Entry {
        var seq: UInt64
        /// The first batch that may commit this entry.
        var eligible: UInt64
        var records: [Record]
        var syncs: [SyncTarget]
    }

    private let monitor = Monitor()
    private let flush: (Batch) throws(UnionError) -> Void
    /// The longest a leader gathers (`gather`), in nanoseconds; nil: a fraction of the recent flushes' time.
    private let gatherLimit: UInt64?
    /// Changes begun (`beginChange`: waiting for the namespace lock or holding it) and not yet ended.
    private var changesRunning = 0
    /// Of those, the ones waiting for a flush themselves (`waitDurable(_:insideChange:)`): while one does, every
    /// other change waits for its lock, so a leader gathers nothing.
    private var changesWaitingInside = 0
    /// The leader gathering, woken when the changes it waits for ended or one of them waits for a flush.
    private var gatherer: Sleeper?
    /// Flush time, a moving average in nanoseconds (a gather's bound).
    private var recentFlushNanoseconds: UInt64 = 0
    /// Gathers, by how they ended (tests), and the nanoseconds they took.
    private var gathersEnded: (idle: UInt64, waitingInside: UInt64, timedOut: UInt64) = (0, 0, 0)
    private var gatherNanoseconds: UInt64 = 0
    private var queue: [Entry] = []
    private var lastSeq: UInt64 = 0
    private var durableSeq: UInt64 = 0
    private var lastEligible: UInt64 = 0
    private var batchesStarted: UInt64 = 0
    private var isFlushing = false
    private var failures: [(from: UInt64, through: UInt64, error: UnionError)] = []
    /// Flushes failed so far: a waiter fails when one failed while it waited (see `waitDurable`).
    private var failureCount: UInt64 = 0
    private var isAbandoned = false
    private var flushCount: UInt64 = 0
    /// Changes the successful flushes made durable, and the time the flushes took (failed ones too): what
    /// `UnionNamespace.changeStatistics` reports of batching.
    private var flushedChanges: UInt64 = 0
    private var flushNanoseconds: UInt64 = 0
    /// The last sequence number each change queued (`endChange`), oldest first from `changeEndsHead`: a flush
    /// that makes one durable counts that change.
    private var changeEnds: [UInt64] = []
    private var changeEndsHead = 0
    /// Waiters asleep, by the change they wait for. A flush's end wakes only those it covered (or failed) and, when
    /// others still wait, one of them to lead the next flush: a broadcast woke every waiter of the next batch too, and
    /// they all fought for the mutex only to sleep again (the futex calls were a tenth of a create profile).
    private var sleepers: [ObjectIdentifier: (seq: UInt64, sleeper: Sleeper, isWoken: Bool)] = [:]
    private var wakeUps: UInt64 = 0
    /// Changes whose callers did not sleep (`whenDurable`): told by the end of the flush that covers (or fails) them,
    /// on the flushing thread. Someone leads a flush while any is registered (`flushQueued`).
    private var callbacks: [(seq: UInt64, done: Completion)] = []

    /// Told once whether a change is durable (nil) or what failed.
    typealias Completion = @Sendable (UnionError?) -> Void

    /// `flush` makes one batch durable; it runs on whichever waiter leads, without the group's lock held.
    /// `gatherLimit`: see `gather` (tests set one that never runs out).
    init(gatherLimit: Duration? = nil, flush: @escaping (Batch) throws(UnionError) -> Void) {
        self.flush = flush
        self.gatherLimit = gatherLimit.map { limit in
            let (seconds, attoseconds) = limit.components
            return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
        }
    }

    /// A change begins (before it asks for the lock that orders changes); `endChange` ends it. A flush about to start
    /// waits for the changes begun (`gather`).
    func beginChange() {
        self.monitor.withLock { self.changesRunning += 1 }
    }

    /// Queues one change; returns its sequence number for `waitDurable`. Call it right after making the change, under
    /// the lock that orders changes, so the queue order is the order the changes were made in.
    @discardableResult
    func enqueue(_ records: [Record], syncs: [SyncTarget] = [], afterSync: [Record] = []) -> UInt64 {
        self.monitor.lock()
        defer { self.monitor.unlock() }
        if self.isAbandoned { return 0 }
        let eligible = max(self.lastEligible, self.batchesStarted + 1)
        self.lastSeq += 1
        let seq = self.lastSeq
        self.queue.append(Entry(seq: seq, eligible: eligible, records: records, syncs: syncs))
        self.lastEligible = eligible
        if !afterSync.isEmpty {
            self.lastSeq += 1
            self.queue.append(Entry(seq: self.lastSeq, eligible: eligible + 1, records: afterSync, syncs: []))
            self.lastEligible = eligible + 1
        }
        return seq
    }

    /// Ends a change (of possibly several `enqueue` calls) whose first `enqueue` came after `before` (`lastQueued`
    /// when it began): returns the sequence number to wait for, and counts the change for `flushTotals` if it queued
    /// anything. Call it under the lock that orders changes, after the change's last `enqueue`.
    func endChange(queuedAfter before: UInt64) -> UInt64 {
        self.monitor.withLock {
            if self.changesRunning > 0 {
                self.changesRunning -= 1
                if self.changesRunning == 0 { self.gatherer?.signal() }
            }
            let seq = self.lastSeq
            if seq > before {
                // A flush led meanwhile by another thread may have covered it already.
                if seq <= self.durableSeq {
                    self.flushedChanges &+= 1
                } else {
                    self.changeEnds.append(seq)
                }
            }
            return seq
        }
    }

    /// The sequence number of the last change queued (wait for it to cover everything queued so far).
    var lastQueued: UInt64 { self.monitor.withLock { self.lastSeq } }

    /// Flushes done so far (tests: "many waiters, one flush").
    var flushes: UInt64 { self.monitor.withLock { self.flushCount } }

    /// Flushes, the changes they made durable, and the nanoseconds they took, at one instant.
    var flushTotals: (flushes: UInt64, changes: UInt64, nanoseconds: UInt64, gatherNanoseconds: UInt64) {
        self.monitor.withLock { (self.flushCount, self.flushedChanges, self.flushNanoseconds, self.gatherNanoseconds) }
    }

    /// Gathers by how they ended: every change gathered for ended, one waited for a flush itself, the limit passed
    /// (tests).
    var gathers: (idle: UInt64, waitingInside: UInt64, timedOut: UInt64) { self.monitor.withLock { self.gathersEnded } }

    /// Changes begun and not ended (tests: every `beginChange` is ended).
    var changesBegun: Int { self.monitor.withLock { self.changesRunning } }

    /// A leader gathers now (tests).
    var isGathering: Bool { self.monitor.withLock { self.gatherer != nil } }

    /// Times a waiter was woken (tests: "only the waiters a flush covered, and one leader").
    var wakeUpCount: UInt64 { self.monitor.withLock { self.wakeUps } }

    /// Waiters asleep now (tests).
    var sleeping: Int { self.monitor.withLock { self.sleepers.count } }

    /// Returns once change `seq` (and everything queued before it) is durable; throws the error of the flush that
    /// failed to make it so. The first waiter to find no flush running leads the next one.
    ///
    /// A flush that fails while the caller waits fails it too, whether its change was in that batch or queued behind
    /// it: it cannot be durable before that batch is. A change behind a record that must follow a sync (a whiteout
    /// dropped once the entry beating it is durable) never becomes eligible in a batch that fails, so waiting on for
    /// it led the failing flush again and again, in a loop, for as long as the disk failed. Its records stay queued;
    /// the next change's flush retries them.
    ///
    /// `insideChange`: the caller waits in the middle of a change (between `beginChange` and `endChange`), for a step
    /// that must follow the flush: no leader may gather for the changes behind it.
    func waitDurable(_ seq: UInt64, insideChange: Bool = false) throws(UnionError) {
        if NoWaiting.isActive { throw NoWaiting.refuse() }
        guard insideChange else { return try self.waitDurableOutsideChange(seq) }
        self.monitor.withLock {
            self.changesWaitingInside += 1
            self.gatherer?.signal()
        }
        defer { self.monitor.withLock { self.changesWaitingInside -= 1 } }
        try self.waitDurableOutsideChange(seq)
    }

    private func waitDurableOutsideChange(_ seq: UInt64) throws(UnionError) {
        self.monitor.lock()
        let failuresBefore = self.failureCount
        var me: Sleeper?
        while true {
            if self.isAbandoned {
                // The simulated process is dead: nothing it waits for will ever be durable.
                self.monitor.unlock()
                throw .simulatedCrash(point: "abandoned group commit")
            }
            if self.durableSeq >= seq {
                self.leaveWaiting()
                return
            }
            if let failed = self.failures.last(where: { $0.from < seq && seq <= $0.through }) {
                self.leaveWaiting()
                throw failed.error
            }
            if self.failureCount > failuresBefore, let failed = self.failures.last {
                self.leaveWaiting()
                throw failed.error
            }
            if self.isFlushing {
                let sleeper = me ?? Sleeper()
                me = sleeper
                // Registered only while asleep: once awake (the mutex held), it checks again and returns, leads the
                // next flush, or registers again because a flush runs (whose end elects a leader anew).
                self.sleepers[ObjectIdentifier(sleeper)] = (seq, sleeper, false)
                self.monitor.wait(sleeper)
                self.sleepers[ObjectIdentifier(sleeper)] = nil
                continue
            }
            switch self.leadOne() {
            case .nothingEligible:
                // Nothing can be eligible only if `seq` was never queued (an abandoned or foreign number). Any
                // sleeper checks again for itself.
                for waiting in self.sleepers.values { waiting.sleeper.signal() }
                self.monitor.unlock()
                return
            case .flushed(let told):
                guard !told.isEmpty else { continue }
                self.monitor.unlock()
                for (done, error) in told { done(error) }
                self.monitor.lock()
            }
        }
    }

    /// A sleeper's way out (monitor locked; returns with it unlocked): callers of `whenDurable` that still wait need
    /// a flusher when nobody flushes, since a sleeper leads only until its own change is covered.
    private func leaveWaiting() {
        let needsFlusher = self.needsFlusher
        self.monitor.unlock()
        if needsFlusher {
            DispatchQueue.global().async { self.leadWhileAwaited() }
        }
    }

    private enum Lead {
        case nothingEligible
        /// The callbacks the flush covered or failed, to call with the monitor unlocked.
        case flushed([(Completion, UnionError?)])
    }

    /// Before a flush (monitor locked, no flush running, something eligible): while changes run, waits for them, for at
    /// most a quarter of a recent flush's time (`gatherLimit` when set), so that they join this flush. Without it, the
    /// changes a flush's end released came back while the next flush ran and waited for a third: a client with 32 in
    /// flight kept two batches of ~13 going, each paying a `syncfs` and a sidecar transaction. A change running alone
    /// (a client with one call in flight) never waits: no change runs when its own flush starts.
    private func gather() {
        guard self.changesRunning > 0, self.changesWaitingInside == 0, !self.isAbandoned else { return }
        let limit = self.gatherLimit ?? min(self.recentFlushNanoseconds / 4, Self.longestGather)
        guard limit > 0 else { return }
        let started = Monotonic.nanoseconds()
        let deadline = started &+ limit
        let sleeper = Sleeper()
        self.gatherer = sleeper
        self.isFlushing = true  // the gatherer leads: no other waiter starts a flush meanwhile
        defer {
            self.gatherer = nil
            self.isFlushing = false
            self.gatherNanoseconds &+= Monotonic.nanoseconds() &- started
        }
        while true {
            if self.changesWaitingInside > 0 || self.isAbandoned {
                self.gathersEnded.waitingInside += 1
                return
            }
            if self.changesRunning == 0 {
                self.gathersEnded.idle += 1
                return
            }
            if !self.monitor.wait(sleeper, until: deadline) {
                self.gathersEnded.timedOut += 1
                return
            }
        }
    }

    /// The longest a gather lasts, in nanoseconds, whatever the flushes take: a slow disk's flush is no reason to hold
    /// a batch for longer.
    private static var longestGather: UInt64 { 1_000_000 }

    /// Leads one flush of everything eligible (monitor locked, no flush running; returns with it locked).
    private func leadOne() -> Lead {
        if let first = self.queue.first, first.eligible <= self.batchesStarted + 1 { self.gather() }
        let number = self.batchesStarted + 1
        var ready = 0
        while ready < self.queue.count && self.queue[ready].eligible <= number { ready += 1 }
        guard ready > 0 else { return .nothingEligible }
        self.isFlushing = true
        self.batchesStarted = number
        let taken = Array(self.queue[0..<ready])
        self.queue.removeFirst(ready)
        let from = self.durableSeq
        let through = taken[ready - 1].seq
        self.monitor.unlock()

        var batch = Batch(number: number)
        for entry in taken {
            batch.records += entry.records
            batch.syncs += entry.syncs
        }
        var failure: UnionError?
        let started = Monotonic.nanoseconds()
        do throws(UnionError) {
            try self.flush(batch)
        } catch {
            failure = error
        }
        let took = Monotonic.nanoseconds() &- started

        self.monitor.lock()
        self.flushCount += 1
        self.flushNanoseconds &+= took
        self.recentFlushNanoseconds =
            self.recentFlushNanoseconds == 0 ? took : (self.recentFlushNanoseconds * 7 + took) / 8
        if failure == nil {
            while self.changeEndsHead < self.changeEnds.count && self.changeEnds[self.changeEndsHead] <= through {
                self.flushedChanges &+= 1
                self.changeEndsHead += 1
            }
            if self.changeEndsHead == self.changeEnds.count {
                self.changeEnds.removeAll(keepingCapacity: true)
                self.changeEndsHead = 0
            }
        }
        if let failure {
            // Retry in the next batch; everything behind moves one batch later so `afterSync` order holds.
            self.queue.insert(contentsOf: taken, at: 0)
            for index in self.queue.indices { self.queue[index].eligible += 1 }
            self.lastEligible += 1
            self.failures.append((from, through, failure))
            if self.failures.count > 64 { self.failures.removeFirst() }
            self.failureCount += 1
        } else {
            self.durableSeq = through
        }
        self.isFlushing = false
        self.wakeCoveredAndNextLeader(failed: failure != nil)
        var told: [(Completion, UnionError?)] = []
        if !self.callbacks.isEmpty {
            self.callbacks.removeAll { waiting in
                if waiting.seq <= self.durableSeq {
                    told.append((waiting.done, nil))
                    return true
                }
                // A failed flush also fails the callers queued behind its batch: none of them can be durable before
                // it, and an entry that must follow a sync never became eligible in a batch that failed, so leading
                // on for them retried the failing flush at once, in a loop, for as long as the disk failed. Their
                // records stay queued; the next change's flush retries them.
                if let failure {
                    told.append((waiting.done, failure))
                    return true
                }
                return false
            }
        }
        return .flushed(told)
    }

    /// Callers of `whenDurable` wait and no flush runs (monitor locked).
    private var needsFlusher: Bool { !self.callbacks.isEmpty && !self.isFlushing && !self.isAbandoned }

    /// Calls `done` once change `seq` (and everything queued before it) is durable, or with the error of the flush that
    /// failed to make it so: at once when that is already known, else on the thread of the flush that covers it. The
    /// caller does not sleep; it must see to it that a flush runs (`flushQueued`).
    func whenDurable(_ seq: UInt64, _ done: @escaping Completion) {
        self.monitor.lock()
        if self.isAbandoned {
            self.monitor.unlock()
            return done(.simulatedCrash(point: "abandoned group commit"))
        }
        if self.durableSeq >= seq {
            self.monitor.unlock()
            return done(nil)
        }
        if let failed = self.failures.last(where: { $0.from < seq && seq <= $0.through }) {
            self.monitor.unlock()
            return done(failed.error)
        }
        self.callbacks.append((seq, done))
        self.monitor.unlock()
    }

    /// Unless a flush runs (whose end starts the next one while callers of `whenDurable` wait), leads flushes until no
    /// such caller waits any more, inside `around` (the host's sleep on the disk), on this thread. Returns at once
    /// otherwise.
    func flushQueued(around: (() -> Void) -> Void) {
        guard self.monitor.withLock({ self.needsFlusher }) else { return }
        around { self.leadWhileAwaited() }
    }

    /// Leads flushes while callers of `whenDurable` wait and nobody else flushes.
    private func leadWhileAwaited() {
        self.monitor.lock()
        while self.needsFlusher {
            guard case .flushed(let told) = self.leadOne() else { break }
            guard !told.isEmpty else { continue }
            self.monitor.unlock()
            for (done, error) in told { done(error) }
            self.monitor.lock()
        }
        self.monitor.unlock()
    }

    /// At a flush's end (monitor locked): wakes the sleepers it made durable or failed (a failed flush fails every
    /// sleeper: see `waitDurable`), and, unless one is already woken to do so, the sleeper of the oldest change left to
    /// lead the next flush (a sleeper woken while another flush runs sleeps again, and that flush's end elects anew, so
    /// someone always leads while changes wait).
    private func wakeCoveredAndNextLeader(failed: Bool) {
        var next: (key: ObjectIdentifier, seq: UInt64)?
        var leaderWoken = false
        for (key, waiting) in self.sleepers {
            let covered = waiting.seq <= self.durableSeq || failed
            if covered {
                if !waiting.isWoken {
                    self.sleepers[key]?.isWoken = true
                    self.wakeUps += 1
                    waiting.sleeper.signal()
                }
            } else if waiting.isWoken {
                leaderWoken = true
            } else if next == nil || waiting.seq < next!.seq {
                next = (key, waiting.seq)
            }
        }
        if !leaderWoken, let next, let leader = self.sleepers[next.key] {
            self.sleepers[next.key]?.isWoken = true
            self.wakeUps += 1
            leader.sleeper.signal()
        }
    }

    /// Waits until everything queued so far is durable (close, tests).
    func drain() throws(UnionError) {
        try self.waitDurable(self.lastQueued)
    }

    /// A simulated crash (tests' crash points): what is queued is lost, as it would be when the process dies; later
    /// changes are not recorded and every wait fails (no step that waits for durability runs any more). The
    /// namespace is closed right after.
    func abandon() {
        self.monitor.lock()
        self.isAbandoned = true
        self.queue = []
        for waiting in self.sleepers.values { waiting.sleeper.signal() }
        self.gatherer?.signal()
        let told = self.callbacks
        self.callbacks = []
        self.monitor.unlock()
        for waiting in told { waiting.done(.simulatedCrash(point: "abandoned group commit")) }
    }
}

/// Shared syncs of one key: the fsyncs of one file (WRITE FILE_SYNC / DATA_SYNC and COMMIT, keyed by fileid), and the
/// syncfs calls of one file system (every namespace's group commits, keyed by `st_dev`: `Sidecar.filesystemSyncs`).
/// A caller needs a sync that started after its own write; callers arriving while one runs share the next, and a
/// failing sync fails exactly the callers it was to cover. Striped by key. `@unchecked Sendable`: each stripe's
/// monitor protects its state.
final class FileSyncs: @unchecked Sendable {
    private struct State {
        var started: UInt64 = 0
        var finished: UInt64 = 0
        var isRunning = false
        var waiters = 0
        var errors: [UInt64: UnionError] = [:]
    }

    private final class Stripe {
        let monitor = Monitor()
        var files: [UInt64: State] = [:]
    }

    private let stripes = (0..<32).map { _ in Stripe() }
    private let syncCount = Locked<UInt64>(0)

    /// fsyncs run so far (tests).
    var syncs: UInt64 { self.syncCount.withLock { $0 } }

    /// Callers waiting for (or running) an fsync of `key` (tests).
    func waiting(_ key: UInt64) -> Int {
        let stripe = self.stripes[Int(key % UInt64(self.stripes.count))]
        return stripe.monitor.withLock { stripe.files[key]?.waiters ?? 0 }
    }

    /// Makes what was written to `key` before this call durable, sharing the sync with concurrent callers for the same
    /// key. `sync` runs the fsync or syncfs (on whichever caller leads).
    func sync(_ key: UInt64, _ sync: () throws(UnionError) -> Void) throws(UnionError) {
        let stripe = self.stripes[Int(key % UInt64(self.stripes.count))]
        stripe.monitor.lock()
        var st = stripe.files[key] ?? State()
        // An fsync already running may have started before our write: we need the next one.
        let target = st.started + 1
        st.waiters += 1
        stripe.files[key] = st
        var result: UnionError?
        while true {
            st = stripe.files[key]!
            if st.finished >= target {
                result = st.errors[target]
                break
            }
            if st.isRunning {
                stripe.monitor.wait()
                continue
            }
            st.isRunning = true
            st.started += 1
            let mine = st.started
            stripe.files[key] = st
            stripe.monitor.unlock()
            var failure: UnionError?
            do throws(UnionError) { try sync() } catch { failure = error }
            self.syncCount.withLock { $0 += 1 }
            stripe.monitor.lock()
            st = stripe.files[key]!
            st.isRunning = false
            st.finished = mine
            if let failure { st.errors[mine] = failure }
            stripe.files[key] = st
            stripe.monitor.broadcast()
        }
        st.waiters -= 1
        if st.waiters == 0 && !st.isRunning {
            stripe.files[key] = nil
        } else {
            stripe.files[key] = st
        }
        stripe.monitor.unlock()
        if let result { throw result }
    }
}

/// fsyncs of many objects at once (one group-commit batch's new inodes, or its directories: `FilesystemSync.eachObject`),
/// on a few threads kept for it, started at first use. Concurrent fsyncs share the disk's cache flushes: the block
/// layer sends one flush for every fsync that asked while another ran, where fsyncs one after another wait for a flush
/// each (33 fsyncs on the shared benchmark disk: 1.5 ms at once, 3 to 170 ms one by one while other tenants wrote).
/// `@unchecked Sendable`: `monitor` protects the queue and every group's count.
final class ParallelSyncs: @unchecked Sendable {
    /// The process's pool: its threads sleep in the kernel while the disk works, so a few more than the cores.
    static let shared = ParallelSyncs(threads: 8)

    private final class Group {
        var left: Int
        var failure: UnionError?
        let done = Sleeper()
        init(_ count: Int) { self.left = count }
    }

    private let monitor = Monitor()
    private var queue: [(target: SyncTarget, group: Group)] = []
    private var head = 0

    init(threads: Int) {
        for _ in 0..<threads {
            let thread = Thread { [unowned self] in self.work() }
            thread.name = "strata-fsync"
            thread.start()
        }
    }

    /// fsyncs every target, at the same time; returns when all are done, throwing the first failure.
    func sync(_ targets: [SyncTarget]) throws(UnionError) {
        if targets.count <= 1 {
            for target in targets { try Sidecar.sync(target) }
            return
        }
        let group = Group(targets.count)
        self.monitor.lock()
        for target in targets { self.queue.append((target, group)) }
        self.monitor.broadcast()
        // The caller takes jobs too rather than only sleeping (any group's: they are all somebody's batch).
        while group.left > 0 {
            if let job = self.take() {
                self.run(job)
            } else {
                self.monitor.wait(group.done)
            }
        }
        self.monitor.unlock()
        if let failure = group.failure { throw failure }
    }

    /// The next job, or nil (monitor locked).
    private func take() -> (target: SyncTarget, group: Group)? {
        guard self.head < self.queue.count else { return nil }
        let job = self.queue[self.head]
        self.head += 1
        if self.head == self.queue.count {
            self.queue.removeAll(keepingCapacity: true)
            self.head = 0
        }
        return job
    }

    /// Runs one job with the monitor unlocked; returns with it locked.
    private func run(_ job: (target: SyncTarget, group: Group)) {
        self.monitor.unlock()
        var failure: UnionError?
        do throws(UnionError) { try Sidecar.sync(job.target) } catch { failure = error }
        self.monitor.lock()
        if let failure, job.group.failure == nil { job.group.failure = failure }
        job.group.left -= 1
        if job.group.left == 0 { job.group.done.signal() }
    }

    private func work() {
        self.monitor.lock()
        while true {
            if let job = self.take() {
                self.run(job)
            } else {
                self.monitor.wait()
            }
        }
    }
}
