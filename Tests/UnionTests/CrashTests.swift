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
    /// A second namespace on an upper that is open is refused, naming the cause (the first holds the sidecar
    /// exclusively: `Sidecar.exclusiveLocking`), and touches nothing of the first's `work/`; once the first closed, an
    /// open takes the layer and clears `work/`.
    @Test func secondOpenIsRefusedAndLeavesWorkAlone() throws {
        let f = Fixture()
        let first = try f.open()
        f.file(f.upper + "/work/copyup-in-progress", "busy")
        do {
            let second = try f.open()
            second.close()
            Issue.record("a second namespace opened on a layer held by the first")
        } catch let error as UnionError {
            #expect("\(error)".contains("open in another namespace"), "\(error)")
        }
        #expect(f.exists(f.upper + "/work/copyup-in-progress"))
        first.close()
        let third = try f.open()
        #expect(!f.exists(f.upper + "/work/copyup-in-progress"))
        third.close()
    }

    /// A child forked by another thread (posix_spawn) holds a copy of the layer's lock descriptor until its exec: a
    /// reopen right after a close waits for it instead of taking the layer for open elsewhere (work/ left uncleaned).
    @Test func lockHeldAMomentLongerIsWaitedFor() throws {
        let f = Fixture()
        let u = try f.open()
        let lockPath = f.upper + "/lock"
        let copy = FD(dup(u.upper!.lock.raw))  // the forked child's copy
        u.close()
        let fresh = FD(Glibc.open(lockPath, O_RDWR | O_CLOEXEC))
        let tried = Flag()
        let taker = Worker { () -> Bool in
            try UpperLayer.lockExclusively(fresh, path: lockPath, within: .seconds(60)) { tried.set() }
        }
        #expect(eventually(30) { tried.isSet })
        copy.close()  // the child's exec
        #expect(try taker.join())
    }

    @Test func lockHeldThroughoutMeansOpenElsewhere() throws {
        let f = Fixture()
        let first = try f.open()
        defer { first.close() }
        let fresh = FD(Glibc.open(f.upper + "/lock", O_RDWR | O_CLOEXEC))
        var attempts = 0
        let taken = try UpperLayer.lockExclusively(fresh, path: "lock", within: .milliseconds(20)) { attempts += 1 }
        #expect(!taken && attempts >= 1)
    }
}

/// Each change stopped at each of its named crash points, then a reopen: the union is one of the states before or
/// after the change, never a mix, and the change can be done again.
@Suite struct CrashPointTests {
    static func crash(_ u: UnionNamespace, at point: String, _ body: () throws -> Void) {
        u.hooks?.crashAt.withLock { $0 = point }
        #expect(throws: UnionError.simulatedCrash(point: point)) { try body() }
        u.close()
    }

    @Test(arguments: ["copyUp.afterCopy", "copyUp.afterRecord", "copyUp.afterPublish"])
    func copyUp(point: String) throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/file", "lower")
        var u = try f.open()
        let id = try u.walk("d/file").1.fileid
        Self.crash(u, at: point) { try u.put("d/file", "UPPER") }
        u = try f.open()
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.upper + "/work").isEmpty)
        #expect(try u.walk("d/file").1.fileid == id)
        // The data write never happened: the content is the lower one either way.
        #expect(try u.contents("d/file") == "lower")
        try u.put("d/file", "UPPER")
        #expect(try u.contents("d/file") == "UPPER")
        #expect(try u.walk("d/file").1.fileid == id)
    }

    @Test(arguments: ["create.afterBuild", "create.afterRecord", "create.afterPublish"])
    func createOverWhiteout(point: String) throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/x/old", "o")
        var u = try f.open()
        try u.remove(in: u.h("d/x"), b("old"), as: root)
        try u.rmdir(in: u.h("d"), b("x"), as: root)
        Self.crash(u, at: point) { _ = try u.mkdir(in: u.h("d"), b("x"), attributes: .init(), as: root) }
        u = try f.open()
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.upper + "/work").isEmpty)
        let names = try u.names("d")
        if point == "create.afterPublish" {
            #expect(names == ["x"])
            #expect(try u.names("d/x") == [])  // opaque before it became visible
        } else {
            #expect(names == [])
            _ = try u.mkdir(in: u.h("d"), b("x"), attributes: .init(), as: root)
            #expect(try u.names("d/x") == [])
        }
    }

    @Test(arguments: ["remove.afterWhiteout", "remove.afterUnlink"])
    func removeOfCopiedUpFile(point: String) throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "lower")
        var u = try f.open()
        try u.put("a", "UPPER")
        Self.crash(u, at: point) { try u.remove(in: u.rootHandle, b("a"), as: root) }
        u = try f.open()
        if point == "remove.afterWhiteout" {
            #expect(try u.contents("a") == "UPPER")  // the upper entry beats its own whiteout
            try u.remove(in: u.rootHandle, b("a"), as: root)
        }
        #expect(throws: UnionError.noEntry) { try u.walk("a") }
        #expect(try u.names("") == [])
    }

    @Test(arguments: ["remove.afterWhiteout", "remove.afterUnlink"])
    func rmdirOfMergedDirectory(point: String) throws {
        let f = Fixture()
        f.file(f.lower(1) + "/d/x", "x")
        f.mkdir(f.lower(0))
        var u = try f.open(lowers: 2)
        try u.remove(in: u.h("d"), b("x"), as: root)  // d now in the upper too, merged-empty
        Self.crash(u, at: point) { try u.rmdir(in: u.rootHandle, b("d"), as: root) }
        u = try f.open(lowers: 2)
        if point == "remove.afterWhiteout" {
            #expect(try u.names("d") == [])  // still there, still empty: its whiteouts are intact
            try u.rmdir(in: u.rootHandle, b("d"), as: root)
        }
        #expect(try u.names("") == [])
        _ = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root)
        #expect(try u.names("d") == [])
    }

    @Test(
        arguments: ["rename.afterCopyUp", "rename.afterPrepare", "rename.afterRename"],
        [false, true])
    func renameOfLowerObject(point: String, isDirectory: Bool) throws {
        let f = Fixture()
        if isDirectory {
            f.file(f.lower(0) + "/src/child", "c")
        } else {
            f.file(f.lower(0) + "/src", "content")
        }
        f.mkdir(f.lower(0) + "/to")
        var u = try f.open()
        let id = try u.walk("src").1.fileid
        let handle = try u.h("src")
        let childHandle = isDirectory ? try u.h("src/child") : nil
        Self.crash(u, at: point) { try u.rename(from: u.rootHandle, b("src"), to: u.h("to"), b("dst"), as: root) }
        u = try f.open()
        #expect(try u.getattr(handle).fileid == id)
        if let childHandle { #expect(try u.getattr(childHandle).size == 1) }
        let atOld = (try? u.walk("src")) != nil
        let atNew = (try? u.walk("to/dst")) != nil
        #expect(atOld != atNew, "exactly one of the names: old \(atOld) new \(atNew)")
        let path = atNew ? "to/dst" : "src"
        #expect(try u.walk(path).1.fileid == id)
        if isDirectory {
            #expect(try u.names(path) == ["child"])
            #expect(try u.contents(path + "/child") == "c")
        } else {
            #expect(try u.contents(path) == "content")
        }
        if atOld {
            try u.rename(from: u.rootHandle, b("src"), to: u.h("to"), b("dst"), as: root)
        }
        #expect(try u.names("") == ["to"])
        #expect(try u.names("to") == ["dst"])
        #expect(try u.walk("to/dst").1.fileid == id)
    }
}
