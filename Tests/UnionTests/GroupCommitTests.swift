import Basics
import Foundation
import GRDB
import Glibc
import Testing

@testable import Union

/// Waits (bounded) until `condition` holds; false after `seconds`.
func eventually(_ seconds: Double = 20, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// The group commit itself: batching, failures, order.
@Suite struct GroupCommitTests {
    /// A flush that can be held: `hold` makes the next flush wait for `release`; every batch is recorded.
    final class Recorder: @unchecked Sendable {
        let lock = NSLock()
        var batches: [[Int]] = []
        var syncCounts: [Int] = []
        var failBatches: Set<UInt64> = []
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        var holdNext = false

        func flush(_ b: GroupCommit<Int>.Batch) throws(UnionError) {
            self.lock.lock()
            let hold = self.holdNext
            self.holdNext = false
            self.lock.unlock()
            if hold {
                self.entered.signal()
                _ = self.release.wait(timeout: .now() + 30)
            }
            self.lock.lock()
            defer { self.lock.unlock() }
            self.batches.append(b.records)
            self.syncCounts.append(b.syncs.count)
            if self.failBatches.contains(b.number) { throw .io(errno: EIO, call: "fsync", path: "test") }
        }
    }

    /// A group commit flushing through `recorder` whose first flush (of change 0) is held while changes
    /// 1...`count` queue behind it, each waited for by a worker of its own running `wait`.
    func heldFirstFlush<T: Sendable>(
        _ recorder: Recorder, queueing count: Int,
        wait: @escaping @Sendable (GroupCommit<Int>, UInt64) throws -> T
    ) -> (commits: GroupCommit<Int>, leader: Worker<Void>, waiters: [Worker<T>]) {
        let commits = GroupCommit<Int> { (batch) throws(UnionError) in try recorder.flush(batch) }
        recorder.holdNext = true
        let first = commits.enqueue([0])
        let leader = Worker { try commits.waitDurable(first) }
        #expect(recorder.entered.wait(timeout: .now() + 20) == .success)
        let waiters = (1...count).map { change in
            let seq = commits.enqueue([change])
            return Worker { try wait(commits, seq) }
        }
        return (commits, leader, waiters)
    }

    @Test func waitersArrivingDuringAFlushShareTheNextOne() async throws {
        let r = Recorder()
        // 31 changes arrive while the first flush runs.
        let (g, leader, waiters) = self.heldFirstFlush(r, queueing: 31) { g, seq in try g.waitDurable(seq) }
        #expect(eventually { g.lastQueued == 32 })
        r.release.signal()
        try leader.join()
        for w in waiters { try w.join() }
        #expect(g.flushes == 2)
        #expect(r.batches == [[0], Array(1...31)])
    }

    /// A flush's end wakes the waiters it made durable and one waiter to lead the next flush, not every waiter: 31
    /// changes arriving during a flush cost one wake-up at its end (their leader) and 30 at the end of theirs.
    @Test func aFlushWakesOnlyTheWaitersItCoveredAndOneLeader() throws {
        let r = Recorder()
        let (g, leader, waiters) = self.heldFirstFlush(r, queueing: 31) { g, seq in try g.waitDurable(seq) }
        #expect(eventually { g.sleeping == 31 })
        r.release.signal()
        try leader.join()
        for w in waiters { try w.join() }
        #expect(r.batches == [[0], Array(1...31)])
        #expect(g.wakeUpCount == 31, "a broadcast would have woken all 31 twice")
    }

    /// A change waits for its flush through the host's hook (`BlockingWaits`), on the caller's thread, after the
    /// namespace lock is released (the hook lets the host's thread pool run other calls meanwhile).
    @Test func aChangeWaitsForItsFlushThroughTheHostsHook() throws {
        let f = Fixture(in: "/dev/shm")
        let u = try f.open()
        defer { u.close() }
        let me = pthread_self()
        let seen = Locked<(calls: Int, lockFree: Bool)>((0, true))
        // This thread's own hook: one installed for the process was replaced by servers other tests started.
        let hook: BlockingWaits.Hook = { wait in
            if pthread_equal(pthread_self(), me) != 0 {
                // Free to take: the change no longer holds the namespace lock.
                let free = u.namespaceLock.tryWriteLock()
                seen.withLock {
                    $0.calls += 1; $0.lockFree = $0.lockFree && free
                }
                if free { u.namespaceLock.unlockWrite() }
            }
            wait()
        }
        _ = try BlockingWaits.withHook(hook) {
            try u.create(in: u.rootHandle, Array("hooked".utf8), mode: .guarded, attributes: .init(), as: root)
        }
        #expect(seen.withLock { $0.calls } == 1)
        #expect(seen.withLock { $0.lockFree })
    }

    @Test func aFailingFlushFailsEveryWaiterOfItsBatchAndIsRetried() async throws {
        let r = Recorder()
        r.failBatches = [2]
        let (g, leader, waiters) = self.heldFirstFlush(r, queueing: 8) { g, seq -> Bool in
            do {
                try g.waitDurable(seq)
                return true
            } catch {
                return false
            }
        }
        #expect(eventually { g.lastQueued == 9 })
        r.release.signal()
        try leader.join()
        var acknowledged = 0
        for w in waiters where try w.join() { acknowledged += 1 }
        #expect(acknowledged == 0, "a waiter of the failed batch was acknowledged")
        // The failed records are committed again, before anything queued later.
        let later = g.enqueue([9])
        try g.waitDurable(later)
        #expect(r.batches == [[0], Array(1...8), Array(1...9)])
    }

    /// What callers that do not sleep (`whenDurable`, a held reply) were told, by change.
    final class Told: @unchecked Sendable {
        let lock = NSLock()
        var answers: [UInt64: Bool] = [:]

        func done(_ seq: UInt64) -> @Sendable (UnionError?) -> Void {
            { error in self.lock.withLock { self.answers[seq] = error == nil } }
        }

        var count: Int { self.lock.withLock { self.answers.count } }
        var acknowledged: Int { self.lock.withLock { self.answers.values.filter { $0 }.count } }
    }

    /// A group commit whose first flush (of change 0, whose caller is told through `told`) has begun on a worker
    /// thread and is held by `r` until `r.release` is signalled.
    static func leadingAHeldDeferredFlush(_ r: Recorder, _ told: Told) -> (GroupCommit<Int>, Worker<Void>) {
        let g = GroupCommit<Int> { (batch) throws(UnionError) in try r.flush(batch) }
        r.holdNext = true
        let first = g.enqueue([0])
        g.whenDurable(first, told.done(first))
        let leader = Worker { g.flushQueued { lead in lead() } }
        #expect(r.entered.wait(timeout: .now() + 20) == .success)
        return (g, leader)
    }

    /// The deferred form: 31 changes whose callers register `whenDurable` and go on (no sleeper) while the first flush
    /// runs share the next flush, which the first flush's leader runs right after it; none is told before then.
    @Test func deferredChangesArrivingDuringAFlushShareTheNextOneWithoutSleeping() throws {
        let r = Recorder()
        let told = Told()
        let (g, leader) = Self.leadingAHeldDeferredFlush(r, told)
        for change in 1...31 {
            let seq = g.enqueue([change])
            g.whenDurable(seq, told.done(seq))
            var led = false
            g.flushQueued { lead in
                led = true
                lead()
            }
            #expect(!led, "a flush runs: its end leads the next one")
        }
        #expect(told.count == 0 && g.sleeping == 0)
        r.release.signal()
        try leader.join()
        #expect(told.count == 32 && told.acknowledged == 32)
        #expect(g.flushes == 2)
        #expect(r.batches == [[0], Array(1...31)])
        #expect(g.wakeUpCount == 0)
    }

    /// A failing flush tells every deferred caller of its batch of the failure (none is acknowledged); its records are
    /// committed by the next flush, before anything queued later.
    @Test func aFailingFlushFailsEveryDeferredCallerOfItsBatch() throws {
        let r = Recorder()
        r.failBatches = [2]
        let told = Told()
        let (g, leader) = Self.leadingAHeldDeferredFlush(r, told)
        for change in 1...8 {
            let seq = g.enqueue([change])
            g.whenDurable(seq, told.done(seq))
        }
        r.release.signal()
        try leader.join()
        #expect(told.count == 9)
        #expect(told.acknowledged == 1, "a caller of the failed batch was acknowledged")
        // Asked again, a failed change is told of the failure at once.
        let failedAgain = Told()
        g.whenDurable(5, failedAgain.done(5))
        #expect(failedAgain.count == 1 && failedAgain.acknowledged == 0)
        let later = g.enqueue([9])
        try g.waitDurable(later)
        #expect(r.batches == [[0], Array(1...8), Array(1...9)])
    }

    /// A deferred caller that found a sleeper's flush running is not left behind when that sleeper, its own change
    /// durable, returns: a flusher takes over.
    @Test func deferredCallersBehindASleepersFlushAreFlushedAfterIt() throws {
        let r = Recorder()
        let told = Told()
        let g = GroupCommit<Int> { (batch) throws(UnionError) in try r.flush(batch) }
        r.holdNext = true
        let first = g.enqueue([0])
        let leader = Worker { try g.waitDurable(first) }
        #expect(r.entered.wait(timeout: .now() + 20) == .success)
        for change in 1...5 {
            let seq = g.enqueue([change])
            g.whenDurable(seq, told.done(seq))
            g.flushQueued { lead in lead() }  // returns at once: the sleeper's flush runs
        }
        r.release.signal()
        try leader.join()
        #expect(eventually { told.count == 5 })
        #expect(told.acknowledged == 5)
        #expect(r.batches == [[0], Array(1...5)])
    }

    /// A simulated crash tells every deferred caller of the failure.
    @Test func anAbandonedGroupCommitFailsItsDeferredCallers() {
        let told = Told()
        let g = GroupCommit<Int> { (_) throws(UnionError) in }
        let seq = g.enqueue([1])
        g.whenDurable(seq, told.done(seq))
        g.abandon()
        #expect(told.count == 1 && told.acknowledged == 0)
    }

    /// Inside `DeferredDurability.deferring` a change that succeeded does not wait for its flush (not even through
    /// the host's hook); its caller gets what to wait for, and `flush` leads the flush through the hook. A change that
    /// failed waits as before and hands back nothing.
    @Test func aDeferredChangeHandsBackItsFlushInsteadOfWaiting() throws {
        let f = Fixture(in: "/dev/shm")
        let u = try f.open()
        defer { u.close() }
        let me = pthread_self()
        let hooked = Locked(0)
        // This thread's own hook: one installed for the process was replaced by servers other tests started.
        let hook: BlockingWaits.Hook = { wait in
            if pthread_equal(pthread_self(), me) != 0 { hooked.withLock { $0 += 1 } }
            wait()
        }
        let name = Array("deferred".utf8)
        let (made, pending) = BlockingWaits.withHook(hook) {
            DeferredDurability.deferring {
                try? u.create(in: u.rootHandle, name, mode: .guarded, attributes: .init(), as: root)
            }
        }
        #expect(made != nil)
        let waiting = try #require(pending)
        #expect(hooked.withLock { $0 } == 0, "the change waited for its flush")
        let told = Told()
        waiting.whenDurable(told.done(1))
        BlockingWaits.withHook(hook) { waiting.flush() }
        #expect(told.count == 1 && told.acknowledged == 1)
        #expect(hooked.withLock { $0 } == 1)

        let (again, none) = DeferredDurability.deferring {
            try? u.create(in: u.rootHandle, name, mode: .guarded, attributes: .init(), as: root)
        }
        #expect(again == nil)
        #expect(none == nil)
    }

    /// A failed flush fails every deferred caller still waiting, also those queued behind its batch (behind a record
    /// that must follow a sync, never eligible in a batch that failed): their flusher does not retry the failing flush
    /// in a loop for as long as the disk fails. The records stay queued, and a later change's flush commits them.
    @Test func aFailedFlushFailsTheDeferredCallersBehindItsBatchWithoutRetrying() throws {
        let r = Recorder()
        r.failBatches = Set(1...1_000)
        let told = Told()
        let g = GroupCommit<Int> { (batch) throws(UnionError) in try r.flush(batch) }
        let dir = FD(open("/", O_RDONLY | O_DIRECTORY))
        let first = g.enqueue([1], syncs: [.directory(dir, path: "/")], afterSync: [2])
        let behind = g.enqueue([3])
        g.whenDurable(first, told.done(first))
        g.whenDurable(behind, told.done(behind))
        g.flushQueued { lead in lead() }
        #expect(told.count == 2 && told.acknowledged == 0)
        #expect(g.flushes == 1, "the failing flush was retried \(g.flushes - 1) times for the caller behind it")
        r.failBatches = []
        try g.waitDurable(g.enqueue([4]))
        #expect(r.batches.first == [1], "the failed flush")
        #expect(r.batches.dropFirst().flatMap { $0 }.sorted() == [1, 2, 3, 4])
    }

    /// The same for a caller that sleeps until its change is durable (UDP, MOUNT, a wait under the lock): waiting for
    /// a record that must follow a sync, it led the failing flush again for as long as the disk failed (here 1,000
    /// times, then it returned as if nothing had happened). Now the first failure fails it, and every other sleeper.
    @Test func aFailedFlushFailsTheSleepersBehindItsBatchWithoutRetrying() throws {
        let r = Recorder()
        r.failBatches = Set(1...1_000)
        let g = GroupCommit<Int> { (batch) throws(UnionError) in try r.flush(batch) }
        let dir = FD(open("/", O_RDONLY | O_DIRECTORY))
        _ = g.enqueue([1], syncs: [.directory(dir, path: "/")], afterSync: [2])
        let lastOfFirst = g.lastQueued
        #expect(throws: UnionError.self) { try g.waitDurable(lastOfFirst) }
        #expect(g.flushes == 1, "the failing flush was led \(g.flushes) times for the sleeper")
        // Two sleepers behind a failing flush: both fail with it, neither is left asleep without a leader.
        r.holdNext = true
        let (third, fourth) = (g.enqueue([3]), g.enqueue([4]))
        let leader = Worker { try g.waitDurable(third) }
        #expect(r.entered.wait(timeout: .now() + 20) == .success)
        let sleeper = Worker { try g.waitDurable(fourth) }
        #expect(eventually { g.sleeping == 1 })
        r.release.signal()
        #expect(throws: UnionError.self) { try leader.join() }
        #expect(throws: UnionError.self) { try sleeper.join() }
        #expect(g.flushes == 2)
        // The records stayed queued: the next change's flush commits them all, once each.
        r.failBatches = []
        let failed = r.batches.count
        try g.waitDurable(g.enqueue([5]))
        #expect(r.batches[failed...].flatMap { $0 }.sorted() == [1, 2, 3, 4, 5])
    }

    @Test func afterSyncRecordsWaitForTheNextBatchAndEverythingQueuedLaterWaitsBehindThem() throws {
        let r = Recorder()
        let g = GroupCommit<Int> { (b) throws(UnionError) in try r.flush(b) }
        let dir = FD(open("/", O_RDONLY | O_DIRECTORY))
        let a = g.enqueue([1], syncs: [.directory(dir, path: "/")], afterSync: [2])
        let b = g.enqueue([3])
        try g.waitDurable(a)
        #expect(r.batches == [[1]])
        try g.waitDurable(b)
        #expect(r.batches == [[1], [2, 3]])
        #expect(r.syncCounts == [1, 0])
    }

    /// A flush about to start waits for the changes running then (`GroupCommit.gather`): a change that began before the
    /// flush and ends during the gather shares it instead of waiting for the next one.
    @Test func aFlushGathersTheChangesRunningWhenItWouldStart() throws {
        let r = Recorder()
        let g = GroupCommit<Int>(gatherLimit: .seconds(3600)) { (b) throws(UnionError) in try r.flush(b) }
        let a = g.enqueue([1])  // a change already made
        g.beginChange()  // another one running
        let waiter = Worker { try g.waitDurable(a) }
        #expect(eventually { g.isGathering })
        g.enqueue([2])
        _ = g.endChange(queuedAfter: a)
        try waiter.join()
        #expect(r.batches == [[1, 2]])
        #expect(g.gathers == (idle: 1, waitingInside: 0, timedOut: 0))
        #expect(g.changesBegun == 0)
        #expect(g.flushTotals.gatherNanoseconds > 0)
    }

    /// A change that waits for a flush in the middle of its steps (a whiteout before its unlink) ends a gather at once:
    /// the changes behind it wait for its lock, so none would join, and the change itself would wait for nothing.
    @Test func aChangeWaitingForAFlushInsideItsStepsEndsTheGather() throws {
        let r = Recorder()
        let g = GroupCommit<Int>(gatherLimit: .seconds(60)) { (b) throws(UnionError) in try r.flush(b) }
        let a = g.enqueue([1])
        g.beginChange()
        let waiter = Worker { try g.waitDurable(a) }
        #expect(eventually { g.isGathering })
        let b = g.enqueue([2])
        let inside = Worker { try g.waitDurable(b, insideChange: true) }
        try waiter.join()
        try inside.join()
        _ = g.endChange(queuedAfter: a)
        #expect(r.batches == [[1, 2]])
        #expect(g.gathers == (idle: 0, waitingInside: 1, timedOut: 0), "the gather ran out its limit instead")
    }

    /// A change running alone (a client with one call in flight) never waits for a gather; nor does one whose flush
    /// finds no other change running.
    @Test func aChangeRunningAloneIsFlushedWithoutGathering() throws {
        let r = Recorder()
        let g = GroupCommit<Int>(gatherLimit: .seconds(3600)) { (b) throws(UnionError) in try r.flush(b) }
        for change in 1...3 {
            let before = g.lastQueued
            g.beginChange()
            g.enqueue([change])
            try g.waitDurable(g.endChange(queuedAfter: before))
        }
        #expect(r.batches == [[1], [2], [3]])
        #expect(g.gathers == (idle: 0, waitingInside: 0, timedOut: 0))
    }

    /// Every namespace change ends what it began, also one refused or failed half-way: a change left counted would make
    /// every later flush wait out its gather.
    @Test func namespaceChangesEndWhatTheyBegin() throws {
        let f = Fixture(in: "/dev/shm")
        let u = try f.open()
        defer { u.close() }
        let name = Array("made".utf8)
        _ = try u.create(in: u.rootHandle, name, mode: .guarded, attributes: .init(), as: root)
        #expect(throws: UnionError.self) {
            try u.create(in: u.rootHandle, name, mode: .guarded, attributes: .init(), as: root)
        }
        #expect(throws: UnionError.self) { try u.remove(in: u.rootHandle, Array("absent".utf8), as: root) }
        try u.remove(in: u.rootHandle, name, as: root)
        #expect(u.identities.commits.changesBegun == 0)
    }

    /// A gather ends at its limit when the running change does not end (a change waiting for a long copy-up).
    @Test func aGatherEndsAtItsLimit() throws {
        let r = Recorder()
        let g = GroupCommit<Int>(gatherLimit: .milliseconds(1)) { (b) throws(UnionError) in try r.flush(b) }
        let a = g.enqueue([1])
        g.beginChange()
        try g.waitDurable(a)
        #expect(r.batches == [[1]])
        #expect(g.gathers == (idle: 0, waitingInside: 0, timedOut: 1))
        _ = g.endChange(queuedAfter: a)
        #expect(g.changesBegun == 0)
    }

    @Test func concurrentSyncsOfOneFileShareOneFsync() async throws {
        let syncs = FileSyncs()
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let count = Locked(0)
        let first = Worker {
            try syncs.sync(7) { () throws(UnionError) in
                count.withLock { $0 += 1 }
                entered.signal()
                _ = release.wait(timeout: .now() + 30)
            }
        }
        #expect(entered.wait(timeout: .now() + 20) == .success)
        // 16 COMMITs of the same file while its fsync runs: they need one that starts after them, and share it.
        let others = (0..<16).map { _ in
            Worker { try syncs.sync(7) { () throws(UnionError) in count.withLock { $0 += 1 } } }
        }
        // Another file's fsync does not wait for file 7's.
        try syncs.sync(8) { () throws(UnionError) in }
        #expect(eventually { syncs.waiting(7) == 17 })
        release.signal()
        try first.join()
        for o in others { try o.join() }
        #expect(count.withLock { $0 } == 2)
    }

    @Test func aFailedFileSyncFailsItsWaiters() throws {
        let syncs = FileSyncs()
        #expect(throws: UnionError.io(errno: EIO, call: "fsync", path: "f")) {
            try syncs.sync(1) { () throws(UnionError) in throw .io(errno: EIO, call: "fsync", path: "f") }
        }
        try syncs.sync(1) { () throws(UnionError) in }  // the next one succeeds
    }
}

/// Group commits of several namespaces on one file system: they share its syncfs calls, and batches of sidecar
/// records alone sync only the WAL.
@Suite struct SharedFilesystemSyncTests {
    /// `count` sidecars on one tmpfs directory, each making its batches durable with a syncfs shared through `syncs`.
    func sidecars(_ f: Fixture, _ count: Int, _ syncs: FileSyncs) throws -> (sidecars: [Sidecar], dir: FD, dev: UInt64)
    {
        let dir = FD(open(f.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        var st = stat()
        #expect(fstat(dir.raw, &st) == 0)
        let all = try (0..<count).map { i in
            let s = try Sidecar(path: f.base + "/s\(i).db", readOnly: false)
            try s.useFilesystemSync(.wholeFilesystem(dir), syncs: syncs)
            return s
        }
        return (all, dir, UInt64(st.st_dev))
    }

    /// 32 namespaces commit a batch each while another namespace's syncfs runs: that syncfs may have started before
    /// their records were committed, so they need one more, and share it.
    @Test func namespacesWaitingWhileASyncfsRunsShareTheNextOne() throws {
        let f = Fixture(in: "/dev/shm")
        let syncs = FileSyncs()
        let (all, dir, dev) = try self.sidecars(f, 32, syncs)
        defer { for s in all { s.close() } }
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let running = Worker {
            try syncs.sync(dev) { () throws(UnionError) in
                entered.signal()
                _ = release.wait(timeout: .now() + 30)
            }
        }
        #expect(entered.wait(timeout: .now() + 20) == .success)
        let waiters = all.map { s in
            let seq = s.commits.enqueue(
                [{ db in try db.execute(sql: "PRAGMA user_version = 1") }],
                syncs: [
                    .directory(dir, path: f.base)
                ])
            return Worker { try s.commits.waitDurable(seq) }
        }
        #expect(eventually { syncs.waiting(dev) == 33 })
        release.signal()
        try running.join()
        for w in waiters { try w.join() }
        #expect(syncs.syncs == 2, "one syncfs running, one shared by the 32 namespaces that came after it")
    }

    /// Waiters of a syncfs that fails fail (their batches are retried by their group commits); those that came while
    /// it ran share the next one and succeed.
    @Test func aFailingSyncfsFailsExactlyTheWaitersItCovered() throws {
        let syncs = FileSyncs()
        let dev: UInt64 = 42
        let enteredFirst = DispatchSemaphore(value: 0), releaseFirst = DispatchSemaphore(value: 0)
        let enteredFailing = DispatchSemaphore(value: 0), releaseFailing = DispatchSemaphore(value: 0)
        let first = Worker {
            try syncs.sync(dev) { () throws(UnionError) in
                enteredFirst.signal()
                _ = releaseFirst.wait(timeout: .now() + 30)
            }
        }
        #expect(enteredFirst.wait(timeout: .now() + 20) == .success)
        // Eight callers while the first runs: they share the second, which fails.
        let covered = (0..<8).map { _ in
            Worker { () -> Bool in
                do {
                    try syncs.sync(dev) { () throws(UnionError) in
                        enteredFailing.signal()
                        _ = releaseFailing.wait(timeout: .now() + 30)
                        throw .io(errno: EIO, call: "syncfs", path: "test")
                    }
                    return true
                } catch {
                    return false
                }
            }
        }
        #expect(eventually { syncs.waiting(dev) == 9 })
        releaseFirst.signal()
        try first.join()
        #expect(enteredFailing.wait(timeout: .now() + 20) == .success)
        // Four callers while the failing one runs: they need the third.
        let later = (0..<4).map { _ in Worker { try syncs.sync(dev) { () throws(UnionError) in } } }
        #expect(eventually { syncs.waiting(dev) == 12 })
        releaseFailing.signal()
        for c in covered { #expect(try c.join() == false, "a caller of the failed syncfs was told it succeeded") }
        for l in later { try l.join() }
        #expect(syncs.syncs == 3)
    }

    /// A batch of sidecar records alone (a LOOKUP's first sighting) commits with synchronous = FULL (the WAL's
    /// fdatasync) and no syncfs; a batch with a file system change commits with NORMAL and one syncfs.
    @Test func batchesOfRecordsAloneSyncTheWALInsteadOfTheFileSystem() throws {
        let f = Fixture(in: "/dev/shm")
        let syncs = FileSyncs()
        let (all, dir, _) = try self.sidecars(f, 1, syncs)
        let s = all[0]
        defer { s.close() }
        let seen = Locked<[Int]>([])
        let record: SidecarRecord = { db in
            let mode = try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1
            seen.withLock { $0.append(mode) }
        }
        try s.commits.waitDurable(s.commits.enqueue([record]))
        #expect(seen.withLock { $0 } == [2])  // FULL
        #expect(syncs.syncs == 0)
        try s.commits.waitDurable(s.commits.enqueue([record], syncs: [.directory(dir, path: f.base)]))
        #expect(seen.withLock { $0 } == [2, 1])  // NORMAL, then the syncfs
        #expect(syncs.syncs == 1)
        // A transaction outside the group commit (open, repairs) is one of records alone too.
        try s.write("test") { db in try record(db) }
        #expect(seen.withLock { $0 } == [2, 1, 2])
        #expect(syncs.syncs == 1)
        #expect(try s.read("test") { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } == 1)
    }

    /// ext4 with a journal and XFS: a batch with a file system change commits with synchronous = NORMAL and then
    /// fsyncs the WAL itself (its times touched first, so that the fsync commits the journal: FlushOrderTests); a batch
    /// of records alone and a write outside the group commit commit with FULL. The WAL's pages are clean once the
    /// batch is durable (a journal commit writes no data overwritten in place: an fsync of a tree object alone would
    /// leave the records in the page cache).
    @Test func journaledBatchesSyncTheirWAL() throws {
        // A disk file system: on tmpfs every page stays dirty whatever syncs it.
        let f = Fixture(in: "/var/tmp")
        defer { try? FileManager.default.removeItem(atPath: f.base) }
        let dir = FD(open(f.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        #expect(Files.filesystemType(dir) != 0x0102_1994, "/var/tmp is a tmpfs: this test needs a disk")
        let s = try Sidecar(path: f.base + "/s.db", readOnly: false)
        defer { s.close() }
        try s.useFilesystemSync(.orderedJournal)
        #expect(try s.read("test") { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } == 1)
        try s.write("test") { db in try db.execute(sql: "CREATE TABLE grow(b BLOB)") }
        let seen = Locked<[Int]>([])
        let grow: SidecarRecord = { db in
            seen.withLock { $0.append((try? Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1) ?? -1) }
            try db.execute(sql: "INSERT INTO grow VALUES (zeroblob(20000))")
        }
        func dirtyWALPages() -> UInt64? {
            let wal = open(f.base + "/s.db-wal", O_RDONLY | O_CLOEXEC)
            guard wal >= 0 else { return nil }
            let counts = Sys.pageCacheCounts(FD(wal), offset: 0, count: 0)
            return counts.map { $0.dirty + $0.writeback }
        }
        for round in 0..<3 {
            try s.commits.waitDurable(s.commits.enqueue([grow], syncs: [.directory(dir, path: f.base)]))
            #expect(dirtyWALPages() == 0, "round \(round): the WAL still has dirty pages after a durable batch")
        }
        #expect(seen.withLock { $0 } == [1, 1, 1])  // NORMAL: the batch synced the WAL
        try s.commits.waitDurable(s.commits.enqueue([grow]))
        #expect(seen.withLock { $0 } == [1, 1, 1, 2])  // records alone: FULL
        #expect(dirtyWALPages() == 0)
    }
}

/// A body run on its own thread (not the 2-thread cooperative pool: these bodies block on locks and flushes).
final class Worker<T: Sendable>: @unchecked Sendable {
    private var result: Result<T, any Error>?
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            let r = Result { try body() }
            self.result = r
            self.done.signal()
        }
        thread.start()
    }

    /// The body's result; throws its error, or fails after `seconds`.
    func join(_ seconds: Double = 120) throws -> T {
        guard self.done.wait(timeout: .now() + seconds) == .success else {
            throw UnionError.io(errno: ETIMEDOUT, call: "join", path: "worker thread did not finish in \(seconds) s")
        }
        return try self.result!.get()
    }
}

/// Batches that fsync each changed object (ext4 without a journal): each object once, inodes before the names that
/// lead to them, and a sync of the whole file system for the changes no single fsync covers.
@Suite struct EachObjectSyncTests {
    func path(_ t: SyncTarget) -> String {
        switch t {
        case .directory(_, let p), .file(_, let p), .data(_, let p), .filesystem(let p): return p
        }
    }

    @Test func eachObjectOnceInodesAndTheWALFirstThenTheDirectories() throws {
        let f = Fixture(in: "/dev/shm")
        f.mkdir(f.base + "/p")
        f.mkdir(f.base + "/p/d")
        f.mkdir(f.base + "/p/d/e")
        f.file(f.base + "/p/a")
        f.file(f.base + "/p/d/b")
        func pathFD(_ p: String) -> FD { FD(open(f.base + p, Sys.O_PATH | O_DIRECTORY | O_CLOEXEC)) }
        func readFD(_ p: String) -> FD { FD(open(f.base + p, O_RDONLY | O_CLOEXEC)) }
        let p = pathFD("/p")
        // A batch as mkdir-tree makes it: MKDIR d in p, CREATE a in p, MKDIR e in d, CREATE b in d.
        let targets: [SyncTarget] = [
            .file(readFD("/p/d"), path: "d"), .directory(p, path: "p"),
            .file(readFD("/p/a"), path: "a"), .directory(pathFD("/p"), path: "p again"),
            .file(readFD("/p/d/e"), path: "e"), .directory(pathFD("/p/d"), path: "d as parent"),
            .file(readFD("/p/d/b"), path: "b"), .directory(pathFD("/p/d"), path: "d again"),
        ]
        let wal = SyncTarget.data(readFD("/p/a"), path: "wal")
        let rounds = try #require(Sidecar.syncOrder(targets, with: wal))
        #expect(rounds.map { $0.map(self.path) } == [["wal", "d", "a", "e", "b"], ["p"]])
        for round in rounds { try ParallelSyncs.shared.sync(round) }
        #expect(Sidecar.syncOrder(targets + [.filesystem(path: "s")], with: wal) == nil)
    }

    /// fsyncs run at once: all of them run, and the first failure is the caller's.
    @Test func parallelSyncsRunEveryTargetAndThrowAFailure() throws {
        let f = Fixture(in: "/dev/shm")
        let files = (0..<20).map { i -> SyncTarget in
            f.file(f.base + "/f\(i)")
            return .file(FD(open(f.base + "/f\(i)", O_RDONLY | O_CLOEXEC)), path: "f\(i)")
        }
        try ParallelSyncs.shared.sync(files)
        // fsync of an O_PATH descriptor fails (EBADF).
        let bad = SyncTarget.file(FD(open(f.base + "/f0", Sys.O_PATH | O_CLOEXEC)), path: "bad")
        #expect(throws: UnionError.self) { try ParallelSyncs.shared.sync(files + [bad] + files) }
        try ParallelSyncs.shared.sync(files)
    }

    /// A batch whose fsync of one object fails fails every waiter of it, none acknowledged; a batch that needs the
    /// whole file system synced runs one shared syncfs and no fsync of its objects.
    @Test func aFailingObjectFsyncFailsTheBatchAndAFilesystemTargetSyncsTheFilesystem() throws {
        let f = Fixture(in: "/dev/shm")
        let s = try Sidecar(path: f.base + "/s.db", readOnly: false)
        defer { s.close() }
        let syncs = FileSyncs()
        let dir = FD(open(f.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        try s.useFilesystemSync(.eachObject(dir), syncs: syncs)
        f.file(f.base + "/a")
        let bad = SyncTarget.file(FD(open(f.base + "/a", Sys.O_PATH | O_CLOEXEC)), path: "a")  // fsync: EBADF
        let record: SidecarRecord = { db in try db.execute(sql: "PRAGMA user_version = 7") }
        let first = s.commits.enqueue([record], syncs: [.directory(dir, path: f.base), bad])
        let second = s.commits.enqueue([record], syncs: [.directory(dir, path: f.base)])
        #expect(throws: UnionError.self) { try s.commits.waitDurable(first) }
        #expect(throws: UnionError.self) { try s.commits.waitDurable(second) }
        #expect(syncs.syncs == 0)

        let g = try Sidecar(path: f.base + "/g.db", readOnly: false)
        defer { g.close() }
        try g.useFilesystemSync(.eachObject(dir), syncs: syncs)
        let seq = g.commits.enqueue([record], syncs: [.filesystem(path: "s"), bad])
        try g.commits.waitDurable(seq)
        #expect(syncs.syncs == 1)
        // Commits do not sync the WAL themselves: the batch fdatasyncs it with its objects.
        #expect(try g.read("test") { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } == 1)
        #expect(try g.read("test") { db in try Int.fetchOne(db, sql: "PRAGMA user_version") } == 7)
    }

    /// A namespace whose batches fsync each object: CREATE, MKDIR and REMOVE of an empty file need no syncfs; a
    /// symlink (no descriptor to fsync), the removal of a file with data blocks, RMDIR and a LINK of a symlink do.
    @Test func onlyChangesNoSingleFsyncCoversSyncTheFileSystem() throws {
        let f = Fixture(in: "/dev/shm")
        let u = try f.open()
        defer { u.close() }
        let syncs = FileSyncs()
        let tree = try Files.openDirectoryAbsolute(f.upper + "/tree")
        try u.identities.sidecar.useFilesystemSync(.eachObject(tree), syncs: syncs)
        #expect(u.syncsEachObject)
        u.hooks?.spareInodes.store(1, ordering: .relaxed)  // the REMOVE of an empty file below keeps a spare
        let d = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root).0
        _ = try u.create(in: d, b("empty"), mode: .guarded, attributes: .init(), as: root)
        try u.remove(in: d, b("empty"), as: root)  // kept as a spare
        _ = try u.create(in: d, b("again"), mode: .guarded, attributes: .init(), as: root)  // takes it
        try u.mkfile("d", "full", String(repeating: "x", count: 10000))
        try u.rename(from: d, b("again"), to: u.rootHandle, b("moved"), as: root)
        #expect(syncs.syncs == 0)
        _ = try u.symlink(in: d, b("s"), target: b("full"), attributes: .init(), as: root)
        #expect(syncs.syncs == 1)
        try u.remove(in: d, b("full"), as: root)  // its data blocks are freed
        #expect(syncs.syncs == 2)
        try u.remove(in: d, b("s"), as: root)  // a fast symlink: nothing but its inode
        try u.remove(in: u.rootHandle, b("moved"), as: root)
        #expect(syncs.syncs == 2)
        try u.rmdir(in: u.rootHandle, b("d"), as: root)
        #expect(syncs.syncs == 3)
        #expect(try u.names("") == [])
    }
}
