import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct StatisticsTests {
    @Test func startsAtZero() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "x")
        let u = try f.open()
        _ = try u.contents("a")
        #expect(u.statistics == UnionStatistics())
    }

    @Test func writeCopyUpCountsTheFileItsParentsAndItsBytes() throws {
        let f = Fixture()
        let n = 100_000
        f.file(f.lower(0) + "/d1/d2/f", String(repeating: "z", count: n))
        let u = try f.open()
        try u.put("d1/d2/f", "A")
        // d1, d2 (parents made in the upper) and f; only f has data.
        #expect(u.statistics == UnionStatistics(copyUps: 3, copyUpBytes: UInt64(n), whiteoutsCreated: 0))
        // Writes to the upper copy copy nothing more.
        try u.put("d1/d2/f", "B", at: 5)
        #expect(u.statistics.copyUps == 3)
        // A second file in the same (now upper) directory: one copy-up.
        f.file(f.lower(0) + "/d1/d2/g", "1234567")
        try u.put("d1/d2/g", "x")
        #expect(u.statistics == UnionStatistics(copyUps: 4, copyUpBytes: UInt64(n + 7), whiteoutsCreated: 0))
    }

    @Test func truncationCountsOnlyWhatIsCopied() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/big", String(repeating: "a", count: 50))
        let u = try f.open()
        _ = try u.setattr(u.h("big"), .init(size: 3), guardCtime: nil, as: root)
        #expect(u.statistics.copyUps == 1)
        #expect(u.statistics.copyUpBytes == 3)
    }

    @Test func metadataCopyUpsOfSpecialFilesCountWithoutBytes() throws {
        let f = Fixture()
        f.mkdir(f.lower(0))
        mkfifo(f.lower(0) + "/fifo", 0o640)
        f.symlink(f.lower(0) + "/link", to: "target")
        f.mkdir(f.lower(0) + "/dir")
        let u = try f.open()
        for name in ["fifo", "link", "dir"] {
            _ = try u.setattr(u.h(name), .init(uid: 7), guardCtime: nil, as: root)
        }
        #expect(u.statistics == UnionStatistics(copyUps: 3, copyUpBytes: 0, whiteoutsCreated: 0))
    }

    @Test func linkingUpAnotherNameOfAHardLinkIsNoCopyUp() throws {
        let f = Fixture()
        f.hardLinkedLowerFile("/x", alsoAt: "/y", "12345")
        let u = try f.open()
        try u.put("x", "A")
        #expect(u.statistics == UnionStatistics(copyUps: 1, copyUpBytes: 5, whiteoutsCreated: 0))
        _ = try u.setattr(u.h("y"), .init(mode: 0o600), guardCtime: nil, as: root)  // links y up from index/
        #expect(u.statistics == UnionStatistics(copyUps: 1, copyUpBytes: 5, whiteoutsCreated: 0))
    }

    @Test func removeOfALowerNameCreatesOneWhiteout() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "x")
        let u = try f.open()
        try u.remove(in: u.rootHandle, b("a"), as: root)
        #expect(u.statistics == UnionStatistics(copyUps: 0, copyUpBytes: 0, whiteoutsCreated: 1))
    }

    @Test func removeOfAnUpperOnlyNameCreatesNoWhiteout() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "new", "data")
        try u.remove(in: u.rootHandle, b("new"), as: root)
        #expect(u.statistics.whiteoutsCreated == 0)
        #expect(u.statistics == UnionStatistics())
    }

    @Test func whiteoutsOfRmdirRenameAndCopiedUpNamesCount() throws {
        let f = Fixture()
        f.files(lower: 0, ["/d/a": "x", "/d/b": "y", "/c": "z"])
        let u = try f.open()
        // A copied-up name that exists below: one whiteout (and its parent `d` was copied up with it).
        try u.put("d/a", "X")
        try u.remove(in: u.h("d"), b("a"), as: root)
        #expect(u.statistics.whiteoutsCreated == 1)
        // Rename away of a lower name: its old name is whited out.
        try u.rename(from: u.h("d"), b("b"), to: u.rootHandle, b("b2"), as: root)
        #expect(u.statistics.whiteoutsCreated == 2)
        // RMDIR of a (merged-empty) directory that exists below.
        try u.rmdir(in: u.rootHandle, b("d"), as: root)
        #expect(u.statistics.whiteoutsCreated == 3)
        // Creating over a whiteout drops it: no new whiteout, and the counter never goes down.
        try u.mkfile("", "d", "new")
        #expect(u.statistics.whiteoutsCreated == 3)
        // Removing that new upper file re-creates the whiteout (the name exists below): counted.
        try u.remove(in: u.rootHandle, b("d"), as: root)
        #expect(u.statistics.whiteoutsCreated == 4)
        // The copy-ups: d/a and d (WRITE), d/b (RENAME), none for c.
        #expect(u.statistics.copyUps == 3)
        #expect(u.statistics.copyUpBytes == 2)
    }

    @Test func countsAreExactUnderConcurrency() async throws {
        let f = Fixture()
        for i in 0..<32 { f.file(f.lower(0) + "/f\(i)", String(repeating: "q", count: i)) }
        let u = try f.open()
        await withTaskGroup(of: Void.self) { g in
            for i in 0..<32 {
                g.addTask {
                    try? u.put("f\(i)", "")
                    try? u.put("f\(i)", "w")
                    _ = u.statistics  // reading concurrently is fine
                }
            }
        }
        #expect(u.statistics.copyUps == 32)
        #expect(u.statistics.copyUpBytes == UInt64((0..<32).reduce(0, +)))
    }

    /// A change is counted with the time it held the namespace lock; changes made while a flush is held share the
    /// next one, and each is counted once among the flushed changes (the mean batch an operator reads off the
    /// metrics).
    @Test func changesCountTheirLockTimeAndTheBatchesThatMadeThemDurable() throws {
        let f = Fixture()
        let u = try f.open()
        #expect(u.changeStatistics == ChangeStatistics())
        for i in 0..<8 { _ = try u.mkdir(in: u.rootHandle, b("d\(i)"), attributes: .init(), as: root) }
        let made = u.changeStatistics
        #expect(made.changes == 8)
        #expect(made.lockHeldNanoseconds > 0)
        #expect(made.flushedChanges == 8)
        #expect(made.flushes >= 1 && made.flushes <= 8)
        #expect(made.flushNanoseconds > 0)
        #expect(made.flushSyncNanoseconds <= made.flushNanoseconds)

        let dirs = try (0..<8).map { try u.h("d\($0)") }
        let sidecar = u.identities.sidecar
        let (entered, release) = holdFirstFlush(sidecar)
        defer { sidecar.beforeFlush.withLock { $0 = nil } }
        let first = Worker { try u.create(in: dirs[0], b("first"), mode: .guarded, attributes: .init(), as: root) }
        #expect(entered.wait(timeout: .now() + 20) == .success)
        let others = (1..<8).map { i in
            Worker { try u.create(in: dirs[i], b("f"), mode: .guarded, attributes: .init(), as: root) }
        }
        #expect(eventually { u.changeStatistics.changes == 16 })  // all 7 made while the first flush is held
        release.signal()
        _ = try first.join()
        for o in others { _ = try o.join() }
        let after = u.changeStatistics
        #expect(after.changes == 16)
        #expect(after.flushedChanges == 16)
        #expect(after.flushes - made.flushes <= 2, "7 changes made during one flush took more than one more")
        #expect(after.lockHeldNanoseconds > made.lockHeldNanoseconds)
        #expect(after.lockWaitNanoseconds >= made.lockWaitNanoseconds)
        #expect(after.flushNanoseconds > made.flushNanoseconds)
        #expect(after.flushSyncNanoseconds <= after.flushNanoseconds)
        u.close()
        #expect(u.changeStatistics == after, "a closed namespace keeps its totals")
    }

    /// On a disk, a flush's time splits into the sidecar transaction and the syncs after it: both are counted, and
    /// the syncs are a part of the whole (`strata_group_commit_sync_seconds_total`).
    @Test func flushesCountTheTimeTheirSyncsTook() throws {
        let f = Fixture(in: "/var/tmp")
        let dir = try Files.openDirectoryAbsolute("/var/tmp")
        #expect(Files.filesystemType(dir) != 0x0102_1994, "/var/tmp is a tmpfs: this test needs a disk")
        let u = try f.open()
        defer { u.close() }
        for i in 0..<4 { _ = try u.mkdir(in: u.rootHandle, b("d\(i)"), attributes: .init(), as: root) }
        let made = u.changeStatistics
        #expect(made.flushedChanges == 4)
        #expect(made.flushSyncNanoseconds > 0, "a batch on a disk synced nothing")
        #expect(made.flushSyncNanoseconds < made.flushNanoseconds, "no time was left for the sidecar transaction")
    }
}
