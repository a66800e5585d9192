import Foundation
import Glibc
import Testing

@testable import Union

/// nlink of a hard-linked lower file through the union: the number of its visible names, wherever they live (upper
/// links, lower names still shown through `index/`, lower names linked up lazily), minus whited-out lower names.
@Suite struct HardLinkCountTests {
    /// A lower layer with `hl/x` and `hl/y`: one inode, nlink 2.
    func twoNames(_ content: String = "lower data") -> Fixture {
        let f = Fixture()
        f.file(f.lower(0) + "/hl/x", content)
        link(f.lower(0) + "/hl/x", f.lower(0) + "/hl/y")
        return f
    }

    func nlinks(_ u: UnionNamespace, _ paths: [String]) throws -> [Int] {
        try paths.map { Int(try u.walk($0).1.nlink) }
    }

    func fileids(_ u: UnionNamespace, _ paths: [String]) throws -> Set<UInt64> {
        Set(try paths.map { try u.walk($0).1.fileid })
    }

    @Test func linkOfATwoNameLowerFileCountsThreeNames() throws {
        let f = self.twoNames()
        let u = try f.open()
        let id = try u.walk("hl/x").1.fileid
        #expect(try self.nlinks(u, ["hl/x", "hl/y"]) == [2, 2])
        let a = try u.link(u.h("hl/x"), in: u.h("hl"), b("x2"), as: root)
        #expect(a.nlink == 3)
        let all = ["hl/x", "hl/y", "hl/x2"]
        #expect(try self.fileids(u, all) == [id])
        #expect(try self.nlinks(u, all) == [3, 3, 3])
        #expect(try u.getattr(u.h("hl/y")).nlink == 3)
        // And across a reopen (the count is persisted, not kept in memory).
        u.close()
        let u2 = try f.open()
        #expect(try self.nlinks(u2, all) == [3, 3, 3])
    }

    @Test(arguments: ["x", "y", "x2"])
    func removeOfOneOfThreeNamesLeavesTwo(_ gone: String) throws {
        let f = self.twoNames()
        let u = try f.open()
        _ = try u.link(u.h("hl/x"), in: u.h("hl"), b("x2"), as: root)
        try u.remove(in: u.h("hl"), b(gone), as: root)
        let rest = ["hl/x", "hl/y", "hl/x2"].filter { $0 != "hl/" + gone }
        #expect(try self.nlinks(u, rest) == [2, 2])
        #expect(try self.fileids(u, rest).count == 1)
        u.close()
        let u2 = try f.open()
        #expect(try self.nlinks(u2, rest) == [2, 2])
        // Removing a second name leaves one.
        try u2.remove(in: u2.h("hl"), b(String(rest[0].dropFirst(3))), as: root)
        #expect(try self.nlinks(u2, [rest[1]]) == [1])
    }

    @Test func writeCopyUpThroughOneNameKeepsTwoNames() throws {
        let f = self.twoNames()
        let u = try f.open()
        try u.put("hl/y", "UPPER")
        #expect(try self.nlinks(u, ["hl/x", "hl/y"]) == [2, 2])
        #expect(try u.contents("hl/x") == "UPPER data")
        #expect(try u.contents("hl/y") == "UPPER data")
        #expect(try self.fileids(u, ["hl/x", "hl/y"]).count == 1)
        // A change of the other name links it up from the index: still two names.
        _ = try u.setattr(u.h("hl/x"), .init(mode: 0o600), guardCtime: nil, as: root)
        #expect(try self.nlinks(u, ["hl/x", "hl/y"]) == [2, 2])
        #expect(try u.walk("hl/y").1.mode == 0o600)
        // Then a LINK: three.
        _ = try u.link(u.h("hl/y"), in: u.rootHandle, b("top"), as: root)
        #expect(try self.nlinks(u, ["hl/x", "hl/y", "top"]) == [3, 3, 3])
    }

    @Test func linkedUpNamesAndWhiteoutsDoNotCountTwice() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/a", "abc")
        for n in ["b", "c", "e"] { link(f.lower(0) + "/d/a", f.lower(0) + "/d/" + n) }
        let u = try f.open()
        let names = ["d/a", "d/b", "d/c", "d/e"]
        #expect(try self.nlinks(u, names) == [4, 4, 4, 4])
        try u.put("d/a", "A")  // copy-up through a
        #expect(try self.nlinks(u, names) == [4, 4, 4, 4])
        // Link up b (rename of the name itself), then remove it: its lower name is whited out, counted once.
        try u.rename(from: u.h("d"), b("b"), to: u.h("d"), b("b2"), as: root)
        #expect(try self.nlinks(u, ["d/a", "d/b2", "d/c", "d/e"]) == [4, 4, 4, 4])
        try u.remove(in: u.h("d"), b("b2"), as: root)
        #expect(try self.nlinks(u, ["d/a", "d/c", "d/e"]) == [3, 3, 3])
        // A rename over a lower name of the same inode that is still shown through the index: the two are the same
        // file (POSIX: nothing happens).
        try u.rename(from: u.h("d"), b("c"), to: u.h("d"), b("e"), as: root)
        #expect(try self.nlinks(u, ["d/a", "d/c", "d/e"]) == [3, 3, 3])
        // A rename of another file over a lower name replaces that name.
        try u.mkfile("d", "other", "o")
        try u.rename(from: u.h("d"), b("other"), to: u.h("d"), b("e"), as: root)
        #expect(try self.nlinks(u, ["d/a", "d/c"]) == [2, 2])
        #expect(try u.walk("d/e").1.nlink == 1)
        // Remove the last lower name (never linked up): `a` alone is left.
        try u.remove(in: u.h("d"), b("c"), as: root)
        #expect(try self.nlinks(u, ["d/a"]) == [1])
        u.close()
        let u2 = try f.open()
        #expect(try self.nlinks(u2, ["d/a"]) == [1])
    }

    @Test func whiteoutOfALowerNameBeforeAnyCopyUpCounts() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/a", "abc")
        for n in ["b", "c"] { link(f.lower(0) + "/d/a", f.lower(0) + "/d/" + n) }
        let u = try f.open()
        try u.remove(in: u.h("d"), b("c"), as: root)
        #expect(try self.nlinks(u, ["d/a", "d/b"]) == [2, 2])
        try u.put("d/b", "B")
        #expect(try self.nlinks(u, ["d/a", "d/b"]) == [2, 2])
        _ = try u.link(u.h("d/a"), in: u.h("d"), b("c"), as: root)
        #expect(try self.nlinks(u, ["d/a", "d/b", "d/c"]) == [3, 3, 3])
    }
}
