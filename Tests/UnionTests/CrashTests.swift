import Foundation
import Glibc
import Testing

@testable import Union

/// Crash states between the named steps, made by hand, then a reopen.
@Suite struct CrashTests {
    @Test func recordsOfVanishedDirectoryAreDroppedOnOpen() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/x", "x")
        var u = try f.open()
        try u.remove(in: u.h("d"), b("x"), as: root)  // whiteout keyed by the upper d's inode
        #expect(u.upperRecords.withLock { !$0.whiteouts.isEmpty })
        u.close()
        // Crash after rmdir(2) of the upper directory, before its records were cleared.
        #expect(Glibc.rmdir(f.upper + "/tree/d") == 0)
        u = try f.open()
        #expect(u.upperRecords.withLock { $0.whiteouts.isEmpty })
        #expect(try u.names("d") == ["x"])
    }

    @Test func identityFallsBackWhenUpperCopyVanished() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "lower")
        var u = try f.open()
        let id = try u.walk("a").1.fileid
        try u.put("a", "U")
        u.close()
        #expect(unlink(f.upper + "/tree/a") == 0)
        u = try f.open()
        #expect(try u.walk("a").1.fileid == id)
        #expect(try u.contents("a") == "lower")
        try u.put("a", "again")
        #expect(try u.walk("a").1.fileid == id)
    }

    @Test func whiteoutCommittedBeforeUnlinkIsConsistent() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "lower")
        var u = try f.open()
        try u.put("a", "upper")
        // Crash state of remove after step 1: whiteout committed, upper entry still there.
        var c = RecordChange()
        let rootIno = try u.rootNode().top.ino
        c.addWhiteouts = [(rootIno, b("a"))]
        try u.commit(c, "test")
        u.close()
        u = try f.open()
        #expect(try u.contents("a") == "upper")  // the real entry beats its own whiteout
        try u.remove(in: u.rootHandle, b("a"), as: root)
        #expect(throws: UnionError.noEntry) { try u.walk("a") }
    }
}

@Suite struct LayerLockTests {
    @Test func secondOpenLeavesWorkAlone() throws {
        let f = Fixture()
        let first = try f.open()
        f.file(f.upper + "/work/copyup-in-progress", "busy")
        let second = try f.open()
        #expect(f.exists(f.upper + "/work/copyup-in-progress"))
        second.close()
        first.close()
        let third = try f.open()
        #expect(!f.exists(f.upper + "/work/copyup-in-progress"))
        third.close()
    }
}
