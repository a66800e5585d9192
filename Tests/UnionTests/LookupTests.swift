import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct LookupTests {
    @Test func topLayerWinsAndDirectoriesMerge() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/a", "A0")
        f.files(lower: 1, ["/d/a": "A1", "/d/b": "B1", "/x": "X1"])
        let u = try f.open(lowers: 2)
        #expect(try u.contents("d/a") == "A0")
        #expect(try u.contents("d/b") == "B1")
        #expect(try u.contents("x") == "X1")
        #expect(try u.names("d") == ["a", "b"])
        #expect(try u.names("") == ["d", "x"])
    }

    @Test func nonDirectoryHidesBelow() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d", "file")
        f.file(f.lower(1) + "/d/a", "A1")
        let u = try f.open(lowers: 2)
        #expect(try u.walk("d").1.type == .regular)
        #expect(throws: UnionError.notDirectory) { try u.walk("d/a") }
        #expect(try u.names("") == ["d"])
    }

    /// A whiteout in the upper, in a strata lower or (foreign) in a plain lower hides the name below it.
    @Test(arguments: ["upper", "strataLower", "ociLower", "overlayLower"])
    func whiteoutHidesBelow(where kind: String) throws {
        let f = Fixture()
        f.file(f.lower(1) + "/d/gone", "G")
        f.file(f.lower(1) + "/d/kept", "K")
        switch kind {
        case "upper":
            // Create the whiteout through the union.
            let u = try f.open(lowers: 2)
            try u.remove(in: u.h("d"), b("gone"), as: root)
            u.close()
        case "strataLower":
            // A promoted upper: remove through a union whose upper then becomes lower 0.
            let promoted = f.base + "/promote-src"
            let u = try UnionNamespace(upper: promoted, lowers: [f.lower(1)], logger: .init(label: "t"))
            try u.remove(in: u.h("d"), b("gone"), as: root)
            u.close()
            #expect(Glibc.rename(promoted, f.lower(0)) == 0)
        case "ociLower":
            f.file(f.lower(0) + "/d/.wh.gone")
        default:
            f.overlayWhiteout(f.lower(0) + "/d/gone")
        }
        f.mkdir(f.lower(0))
        let u = try f.open(lowers: 2)
        #expect(throws: UnionError.noEntry) { try u.walk("d/gone") }
        #expect(try u.names("d") == ["kept"])
        // Mkdir/create over the whiteout brings the name back, empty.
        try u.mkfile("d", "gone", "new")
        #expect(try u.contents("d/gone") == "new")
        #expect(try u.names("d") == ["gone", "kept"])
    }

    @Test func whiteoutInMiddleLayerHidesOnlyBelow() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/n", "top")
        f.files(lower: 1, ["/.wh.n": "", "/m": "mid"])
        f.files(lower: 2, ["/n": "bottom", "/.wh.m": ""])
        let u = try f.open(lowers: 3)
        #expect(try u.contents("n") == "top")  // a real entry above the whiteout wins
        #expect(try u.contents("m") == "mid")  // a whiteout only hides layers below it
        #expect(try u.names("") == ["m", "n"])
    }

    @Test func realEntryBeatsWhiteoutInSameLayer() throws {
        let f = Fixture()
        f.files(lower: 0, ["/n": "real", "/.wh.n": ""])
        f.file(f.lower(1) + "/n", "below")
        let u = try f.open(lowers: 2)
        #expect(try u.contents("n") == "real")
    }

    @Test(arguments: ["oci", "trusted", "user"])
    func foreignOpaqueDirectory(marker: String) throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/top", "T")
        f.file(f.lower(1) + "/d/below", "B")
        switch marker {
        case "oci": f.file(f.lower(0) + "/d/.wh..wh..opq")
        case "trusted": f.setXattr(f.lower(0) + "/d", "trusted.overlay.opaque", "y")
        default: f.setXattr(f.lower(0) + "/d", "user.overlay.opaque", "y")
        }
        let u = try f.open(lowers: 2)
        #expect(try u.names("d") == ["top"])
        #expect(throws: UnionError.noEntry) { try u.walk("d/below") }
    }

    @Test func markersAreNeverShown() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/.wh.x")
        f.file(f.lower(0) + "/.wh..wh..opq")
        f.overlayWhiteout(f.lower(0) + "/y")
        f.file(f.lower(0) + "/z", "z")
        let u = try f.open(lowers: 1)
        #expect(try u.names("") == ["z"])
        #expect(throws: UnionError.noEntry) { try u.walk(".wh.x") }
        #expect(throws: UnionError.noEntry) { try u.walk("y") }
    }

    @Test(arguments: [".", "..", "a/b", "a\u{0}b", "", String(repeating: "n", count: 256)])
    func badNamesAreRejected(name: String) throws {
        let f = Fixture()
        let u = try f.open()
        let expected: UnionError = name.utf8.count > 255 ? .nameTooLong : .badName
        #expect(throws: expected) { try u.lookup(u.rootHandle, b(name), as: root) }
        #expect(throws: expected) {
            try u.create(in: u.rootHandle, b(name), mode: .guarded, attributes: .init(), as: root)
        }
        #expect(throws: expected) { try u.mkdir(in: u.rootHandle, b(name), attributes: .init(), as: root) }
        #expect(throws: expected) { try u.remove(in: u.rootHandle, b(name), as: root) }
        #expect(throws: expected) { try u.rename(from: u.rootHandle, b(name), to: u.rootHandle, b("x"), as: root) }
    }

    @Test func maxLengthNameIsAccepted() throws {
        let f = Fixture()
        let u = try f.open()
        let name = String(repeating: "n", count: 255)
        try u.mkfile("", name, "ok")
        #expect(try u.contents(name) == "ok")
    }

    @Test func symlinksPointingOutsideAreNeverFollowed() throws {
        let f = Fixture()
        f.symlink(f.lower(0) + "/etc", to: "/etc")
        f.symlink(f.lower(0) + "/up", to: "../../..")
        f.symlink(f.lower(0) + "/passwd", to: "/etc/passwd")
        let u = try f.open()
        let (h, a) = try u.walk("etc")
        #expect(a.type == .symlink)
        #expect(try u.readlink(h, as: root) == b("/etc"))
        #expect(throws: UnionError.notDirectory) { try u.walk("etc/passwd") }
        #expect(throws: UnionError.notDirectory) { try u.walk("up/etc") }
        #expect(throws: (any Error).self) { try u.read(u.h("passwd"), offset: 0, count: 10, as: root) }
        #expect(throws: (any Error).self) { try u.put("passwd", "x") }
        #expect(throws: UnionError.notDirectory) {
            try u.create(in: u.h("etc"), b("evil"), mode: .guarded, attributes: .init(), as: root)
        }
        #expect(!f.exists("/etc/evil"))
        // Upper symlinks too.
        _ = try u.symlink(in: u.rootHandle, b("tmp"), target: b("/tmp"), attributes: .init(), as: root)
        #expect(throws: UnionError.notDirectory) {
            try u.mkdir(in: u.h("tmp"), b("evil-strata"), attributes: .init(), as: root)
        }
        #expect(!f.exists("/tmp/evil-strata"))
    }
}
