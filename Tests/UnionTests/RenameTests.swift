import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct RenameTests {
    @Test func renameOfLowerFileCopiesUpAndWhitesOut() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "A")
        let u = try f.open()
        let id = try u.walk("a").1.fileid
        try u.rename(from: u.rootHandle, b("a"), to: u.rootHandle, b("b"), as: root)
        #expect(throws: UnionError.noEntry) { try u.walk("a") }
        #expect(try u.contents("b") == "A")
        #expect(try u.walk("b").1.fileid == id)
        #expect(try u.names("") == ["b"])
    }

    /// A directory only in a lower layer, and one merged from several layers, rename without copying their trees.
    @Test(arguments: [false, true])
    func directoryRenameKeepsDescendants(multiLayer: Bool) throws {
        let f = Fixture()
        f.file(f.lower(1) + "/src/deep/file", "F")
        f.file(f.lower(1) + "/src/top", "T")
        if multiLayer {
            f.file(f.lower(0) + "/src/mid", "M")
        }
        f.mkdir(f.lower(0))
        let u = try f.open(lowers: 2)
        if multiLayer { try u.put("src/mid", "m") }  // now also in the upper
        let before = try ["src", "src/deep", "src/deep/file", "src/top"].map { try u.walk($0).1.fileid }
        let deepHandle = try u.h("src/deep/file")
        _ = try u.mkdir(in: u.rootHandle, b("dst"), attributes: .init(), as: root)
        try u.rename(from: u.rootHandle, b("src"), to: u.h("dst"), b("moved"), as: root)
        #expect(throws: UnionError.noEntry) { try u.walk("src") }
        let after = try ["dst/moved", "dst/moved/deep", "dst/moved/deep/file", "dst/moved/top"].map {
            try u.walk($0).1.fileid
        }
        #expect(before == after)
        #expect(try u.contents("dst/moved/deep/file") == "F")
        #expect(try u.names("dst/moved") == (multiLayer ? ["deep", "mid", "top"] : ["deep", "top"]))
        #expect(!f.exists(f.upper + "/tree/dst/moved/deep"))  // not copied
        // The old handle still works.
        #expect(String(decoding: try u.read(deepHandle, offset: 0, count: 10, as: root).data, as: UTF8.self) == "F")
        // A second rename and a reopen keep it all.
        try u.rename(from: u.h("dst"), b("moved"), to: u.rootHandle, b("again"), as: root)
        u.close()
        let u2 = try f.open(lowers: 2)
        let again = try ["again", "again/deep", "again/deep/file", "again/top"].map { try u2.walk($0).1.fileid }
        #expect(again == before)
        #expect(try u2.names("") == ["again", "dst"])
        #expect(try u2.names("dst") == [])
        #expect(String(decoding: try u2.read(deepHandle, offset: 0, count: 10, as: root).data, as: UTF8.self) == "F")
        // Changes below the renamed directory land in it.
        try u2.mkfile("again/deep", "new", "N")
        try u2.remove(in: u2.h("again"), b("top"), as: root)
        #expect(try u2.names("again/deep") == ["file", "new"])
        #expect(try u2.names("again") == (multiLayer ? ["deep", "mid"] : ["deep"]))
        // Renaming back to the original name works as well.
        try u2.rename(from: u2.rootHandle, b("again"), to: u2.rootHandle, b("src"), as: root)
        #expect(try u2.names("src/deep") == ["file", "new"])
    }

    @Test func renameOntoExisting() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/f1", "one")
        f.file(f.lower(0) + "/f2", "two")
        f.mkdir(f.lower(0) + "/emptydir")
        f.file(f.lower(0) + "/full/x", "x")
        f.file(f.lower(0) + "/d1/inner", "i")
        let u = try f.open()
        let f1 = try u.walk("f1").1.fileid
        try u.rename(from: u.rootHandle, b("f1"), to: u.rootHandle, b("f2"), as: root)
        #expect(try u.contents("f2") == "one")
        #expect(try u.walk("f2").1.fileid == f1)
        #expect(throws: UnionError.isDirectory) {
            try u.rename(from: u.rootHandle, b("f2"), to: u.rootHandle, b("emptydir"), as: root)
        }
        #expect(throws: UnionError.notDirectory) {
            try u.rename(from: u.rootHandle, b("d1"), to: u.rootHandle, b("f2"), as: root)
        }
        #expect(throws: UnionError.notEmpty) {
            try u.rename(from: u.rootHandle, b("d1"), to: u.rootHandle, b("full"), as: root)
        }
        #expect(throws: UnionError.invalid("cannot move a directory into itself")) {
            try u.rename(from: u.rootHandle, b("d1"), to: u.h("d1"), b("self"), as: root)
        }
        // Directory over a merged-empty directory replaces it; the lower content of neither leaks.
        try u.remove(in: u.h("full"), b("x"), as: root)
        try u.rename(from: u.rootHandle, b("d1"), to: u.rootHandle, b("full"), as: root)
        #expect(try u.names("full") == ["inner"])
        try u.rename(from: u.rootHandle, b("full"), to: u.rootHandle, b("emptydir"), as: root)
        #expect(try u.names("emptydir") == ["inner"])
        #expect(try u.names("") == ["emptydir", "f2"])
        // Renaming a name onto itself is a no-op.
        try u.rename(from: u.rootHandle, b("f2"), to: u.rootHandle, b("f2"), as: root)
        #expect(try u.contents("f2") == "one")
    }

    @Test func upperOnlyDirectoryOntoLowerNameIsOpaque() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/target/old", "o")
        let u = try f.open()
        _ = try u.mkdir(in: u.rootHandle, b("fresh"), attributes: .init(), as: root)
        try u.mkfile("fresh", "new")
        try u.remove(in: u.h("target"), b("old"), as: root)
        try u.rename(from: u.rootHandle, b("fresh"), to: u.rootHandle, b("target"), as: root)
        #expect(try u.names("target") == ["new"])
    }

    @Test func nestedRenamesThroughRedirects() throws {
        let f = Fixture()
        f.files(lower: 1, ["/A/sub/deep/file": "F", "/A/x": "X"])
        f.file(f.lower(0) + "/A/sub/mid", "M")
        let u = try f.open(lowers: 2)
        let ids = try ["A/sub", "A/sub/deep/file", "A/sub/mid"].map { try u.walk($0).1.fileid }
        try u.rename(from: u.rootHandle, b("A"), to: u.rootHandle, b("B"), as: root)
        try u.rename(from: u.h("B"), b("sub"), to: u.rootHandle, b("C"), as: root)
        #expect(try u.names("B") == ["x"])
        #expect(try u.names("C") == ["deep", "mid"])
        #expect(try ["C", "C/deep/file", "C/mid"].map { try u.walk($0).1.fileid } == ids)
        // A whiteout inside a redirected directory, and a new directory where the old name was.
        try u.remove(in: u.h("C/deep"), b("file"), as: root)
        #expect(try u.names("C/deep") == [])
        _ = try u.mkdir(in: u.rootHandle, b("A"), attributes: .init(), as: root)
        #expect(try u.names("A") == [])
        try u.rename(from: u.rootHandle, b("C"), to: u.h("A"), b("sub"), as: root)
        #expect(try u.names("A/sub") == ["deep", "mid"])
        #expect(try u.names("A/sub/deep") == [])
        #expect(try u.names("") == ["A", "B"])
        u.close()
        let again = try f.open(lowers: 2)
        #expect(try again.names("A/sub") == ["deep", "mid"])
        #expect(try again.walk("A/sub/mid").1.fileid == ids[2])
    }
}
