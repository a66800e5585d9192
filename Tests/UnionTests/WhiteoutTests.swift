import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct WhiteoutTests {
    @Test func removeOfLowerNameRecordsWhiteout() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/a", "A")
        f.file(f.lower(0) + "/d/b", "B")
        let u = try f.open()
        try u.remove(in: u.h("d"), b("a"), as: root)
        #expect(throws: UnionError.noEntry) { try u.walk("d/a") }
        #expect(try u.names("d") == ["b"])
        #expect(f.exists(f.lower(0) + "/d/a"))
        #expect(!f.exists(f.upper + "/tree/d/a"))
        #expect(throws: UnionError.noEntry) { try u.remove(in: u.h("d"), b("a"), as: root) }
        // Survives a reopen.
        u.close()
        let u2 = try f.open()
        #expect(try u2.names("d") == ["b"])
    }

    @Test func removeOfUpperOnlyNameLeavesNoWhiteout() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "new", "n")
        try u.remove(in: u.rootHandle, b("new"), as: root)
        #expect(!f.exists(f.upper + "/tree/new"))
        #expect(u.upperRecords.withLock { $0.whiteouts.isEmpty })
    }

    @Test func removeOfCopiedUpNameWhitesOutAndUnlinks() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "A")
        let u = try f.open()
        try u.put("a", "X")
        try u.remove(in: u.rootHandle, b("a"), as: root)
        #expect(!f.exists(f.upper + "/tree/a"))
        #expect(throws: UnionError.noEntry) { try u.walk("a") }
    }

    @Test func removeOfDirectoryIsIsDirectory() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/d")
        let u = try f.open()
        #expect(throws: UnionError.isDirectory) { try u.remove(in: u.rootHandle, b("d"), as: root) }
        f.file(f.lower(0) + "/x")
        #expect(throws: UnionError.notDirectory) { try u.rmdir(in: u.rootHandle, b("x"), as: root) }
    }

    @Test func rmdirChecksMergedView() throws {
        let f = Fixture()
        f.file(f.lower(1) + "/d/deep", "x")
        f.mkdir(f.lower(0) + "/d")
        let u = try f.open(lowers: 2)
        #expect(throws: UnionError.notEmpty) { try u.rmdir(in: u.rootHandle, b("d"), as: root) }
        try u.mkfile("d", "upperfile")
        try u.remove(in: u.h("d"), b("deep"), as: root)
        #expect(throws: UnionError.notEmpty) { try u.rmdir(in: u.rootHandle, b("d"), as: root) }
        try u.remove(in: u.h("d"), b("upperfile"), as: root)
        try u.rmdir(in: u.rootHandle, b("d"), as: root)
        #expect(throws: UnionError.noEntry) { try u.walk("d") }
        #expect(try u.names("") == [])
    }

    @Test func rmRfThenMkdirGivesEmptyOpaqueDirectory() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/a", "A")
        f.file(f.lower(0) + "/d/sub/b", "B")
        let u = try f.open()
        let oldID = try u.walk("d").1.fileid
        try u.remove(in: u.h("d/sub"), b("b"), as: root)
        try u.rmdir(in: u.h("d"), b("sub"), as: root)
        try u.remove(in: u.h("d"), b("a"), as: root)
        try u.rmdir(in: u.rootHandle, b("d"), as: root)
        _ = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root)
        #expect(try u.names("d") == [])
        #expect(throws: UnionError.noEntry) { try u.walk("d/a") }
        #expect(try u.walk("d").1.fileid != oldID)
        u.close()
        let u2 = try f.open()
        #expect(try u2.names("d") == [])
        // Creating the old child name again shows only the new one.
        _ = try u2.mkdir(in: u2.h("d"), b("sub"), attributes: .init(), as: root)
        #expect(try u2.names("d/sub") == [])
    }

    @Test func createOverWhiteoutDropsIt() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/f", "lower")
        f.symlink(f.lower(0) + "/s", to: "x")
        let u = try f.open()
        try u.remove(in: u.rootHandle, b("f"), as: root)
        try u.remove(in: u.rootHandle, b("s"), as: root)
        #expect(u.upperRecords.withLock { $0.whiteouts.values.reduce(0) { $0 + $1.count } } == 2)
        try u.mkfile("", "f", "upper")
        _ = try u.symlink(in: u.rootHandle, b("s"), target: b("y"), attributes: .init(), as: root)
        #expect(try u.contents("f") == "upper")
        #expect(try u.readlink(u.h("s"), as: root) == b("y"))
        #expect(u.upperRecords.withLock { $0.whiteouts.values.reduce(0) { $0 + $1.count } } == 0)
    }
}
