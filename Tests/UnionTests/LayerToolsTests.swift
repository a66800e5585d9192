import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct LayerToolsTests {
    static func tree(_ u: UnionNamespace) throws -> [String: String] {
        try u.mergedTree { path, _, attributes in
            switch attributes.type {
            case .directory: return "dir \(String(attributes.mode, radix: 8))"
            case .regular: return "file " + (try u.contents(path))
            default: return "\(attributes.type)"
            }
        }
    }

    @Test func promotedUpperReproducesTheUnion() throws {
        let f = Fixture()
        f.files(lower: 0, ["/keep/a": "A", "/gone": "G", "/wiped/x": "X", "/moved/deep/y": "Y"])
        let u = try f.open()
        try u.remove(in: u.rootHandle, b("gone"), as: root)
        try u.remove(in: u.h("wiped"), b("x"), as: root)
        try u.rmdir(in: u.rootHandle, b("wiped"), as: root)
        _ = try u.mkdir(in: u.rootHandle, b("wiped"), attributes: .init(mode: 0o700), as: root)
        try u.rename(from: u.rootHandle, b("moved"), to: u.h("keep"), b("here"), as: root)
        try u.mkfile("keep", "new", "N")
        _ = try u.link(u.h("keep/new"), in: u.rootHandle, b("hardlink"), as: root)
        _ = try u.symlink(in: u.rootHandle, b("sym"), target: b("/etc"), attributes: .init(), as: root)
        let expected = try Self.tree(u)
        u.close()

        let report = try LayerTools.inspect(layerDirectory: f.upper)
        #expect(report.kind == .strata)
        #expect(report.whiteouts == ["gone", "moved"])
        #expect(report.opaqueDirectories == ["wiped"])
        #expect(report.redirects == ["keep/here": "moved"])

        let promoted = f.base + "/promoted"
        try LayerTools.promote(upper: f.upper, to: promoted)
        #expect(throws: LayerToolError.self) { try LayerTools.promote(upper: f.upper, to: promoted) }
        #expect(!f.exists(promoted + "/layer.db-wal"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: promoted).sorted() == ["layer.db", "tree"])
        let again = try UnionNamespace(
            upper: f.base + "/upper2", lowers: [promoted, f.lower(0)], logger: .init(label: "t"))
        #expect(try Self.tree(again) == expected)
        var s1 = stat(), s2 = stat()
        lstat(promoted + "/tree/keep/new", &s1)
        lstat(promoted + "/tree/hardlink", &s2)
        #expect(s1.st_ino == s2.st_ino)
        let r2 = try LayerTools.inspect(layerDirectory: promoted)
        #expect(r2.whiteouts == report.whiteouts && r2.redirects == report.redirects)
    }

    /// A lower file with two names, written through one: the other name was never linked up into the upper tree
    /// (it shows the `index/` copy). The promoted layer must show the new data under both names.
    @Test func promoteCarriesIndexedLowerHardLinks() throws {
        let f = Fixture()
        f.hardLinkedLowerFile("/hl/a", alsoAt: "/hl/b", "old data")
        let u = try f.open()
        try u.put("hl/a", "NEW data")
        u.close()
        var st = stat()
        #expect(lstat(f.upper + "/tree/hl/b", &st) != 0)  // not linked up: only the index shows it

        let promoted = f.base + "/promoted"
        try LayerTools.promote(upper: f.upper, to: promoted)
        #expect(try FileManager.default.contentsOfDirectory(atPath: promoted).sorted() == ["layer.db", "tree"])
        try FileManager.default.removeItem(atPath: f.upper)  // self-contained: nothing refers to the old upper
        let v = try UnionNamespace(upper: nil, lowers: [promoted, f.lower(0)], logger: .init(label: "t"))
        #expect(try v.contents("hl/b") == "NEW data")
        #expect(try v.contents("hl/a") == "NEW data")
        let a = try v.walk("hl/a").1, bb = try v.walk("hl/b").1
        #expect(a.fileid == bb.fileid)
        #expect(a.nlink == 2 && bb.nlink == 2)
        v.close()
    }

    /// The same with the names spread out: one in a directory the upper never copied up, one under a renamed
    /// (redirected) directory, one whited out, and the written name itself removed afterwards.
    @Test func promoteCarriesIndexedNamesWhereverTheUnionShowsThem() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/w/a", "old data")
        f.file(f.lower(0) + "/keep/untouched", "u")
        for n in ["/other/c", "/moved/d", "/w/gone"] {
            f.mkdir((f.lower(0) + n as NSString).deletingLastPathComponent)
            link(f.lower(0) + "/w/a", f.lower(0) + n)
        }
        let u = try f.open()
        try u.put("w/a", "NEW data")
        try u.remove(in: u.h("w"), b("gone"), as: root)
        try u.rename(from: u.rootHandle, b("moved"), to: u.rootHandle, b("renamed"), as: root)
        try u.remove(in: u.h("w"), b("a"), as: root)
        let expected = try Self.tree(u)
        #expect(expected["other/c"] == "file NEW data" && expected["renamed/d"] == "file NEW data")
        u.close()

        let promoted = f.base + "/promoted"
        try LayerTools.promote(upper: f.upper, lowers: [f.lower(0)], to: promoted)
        var s1 = stat(), s2 = stat()
        lstat(promoted + "/tree/other", &s1)
        lstat(f.lower(0) + "/other", &s2)
        #expect(s1.st_mtim.tv_sec == s2.st_mtim.tv_sec && s1.st_mtim.tv_nsec == s2.st_mtim.tv_nsec)
        let v = try UnionNamespace(upper: nil, lowers: [promoted, f.lower(0)], logger: .init(label: "t"))
        #expect(try Self.tree(v) == expected)
        let c = try v.walk("other/c").1, d = try v.walk("renamed/d").1
        #expect(c.fileid == d.fileid)
        #expect(c.nlink == 2 && d.nlink == 2)
        v.close()
    }

    @Test func inspectReportsForeignMarkers() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/.wh.x")
        f.file(f.lower(0) + "/o/.wh..wh..opq")
        f.overlayWhiteout(f.lower(0) + "/y")
        f.mkdir(f.lower(0) + "/xo")
        f.setXattr(f.lower(0) + "/xo", "user.overlay.opaque", "y")
        f.file(f.lower(0) + "/plain", "p")
        let r = try LayerTools.inspect(layerDirectory: f.lower(0))
        #expect(r.kind == .plain)
        #expect(r.whiteouts == ["d/x", "y"])
        #expect(r.opaqueDirectories == ["o", "xo"])
        #expect(r.files == 1 && r.directories == 3)
    }
}

/// Re-imaging a writable layer (`strata client reset`): moved aside in one rename, then deleted without following the
/// symlinks a client put in it.
@Suite struct DiscardLayerTests {
    @Test func movesAsideThenDeletesWithoutFollowingSymlinks() throws {
        let f = Fixture()
        f.file(f.base + "/outside/keep", "k")
        f.file(f.base + "/upper/tree/etc/passwd", "x")
        #expect(symlink(f.base + "/outside", f.base + "/upper/tree/escape") == 0)
        let aside = try LayerTools.moveAside(layer: f.base + "/upper")
        #expect(access(f.base + "/upper", F_OK) != 0, "the layer's path is free at once")
        #expect(aside.hasPrefix(f.base + "/upper.reset-") && access(aside + "/tree/etc/passwd", F_OK) == 0)
        try LayerTools.deleteDiscarded(aside)
        #expect(access(aside, F_OK) != 0)
        #expect(access(f.base + "/outside/keep", F_OK) == 0, "a symlink's target is never deleted")
    }

    @Test func aMissingLayerIsAnErrorNamingIt() {
        let f = Fixture()
        #expect { try LayerTools.moveAside(layer: f.base + "/none") } throws: { "\($0)".contains(f.base + "/none") }
    }
}

@Suite struct ReadOnlyStorageTests {
    /// Bind-mounts `dir` read-only at `target`; false where mounting is not allowed.
    static func mountReadOnly(_ dir: String, at target: String) -> Bool {
        Glibc.mkdir(target, 0o755)
        guard mount(dir, target, nil, UInt(MS_BIND), nil) == 0 else { return false }
        guard mount(nil, target, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil) == 0 else {
            umount(target)
            return false
        }
        return true
    }

    @Test(arguments: [true, false])
    func strataLowerOnReadOnlyStorage(promoted: Bool) throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/gone", "g")
        f.file(f.lower(0) + "/d/kept", "k")
        let u = try f.open()
        try u.remove(in: u.h("d"), b("gone"), as: root)
        u.close()
        var layer = f.upper
        if promoted {
            layer = f.base + "/promoted"
            try LayerTools.promote(upper: f.upper, to: layer)
        }
        let ro = f.base + "/ro"
        try #require(Self.mountReadOnly(layer, at: ro), "read-only bind mount needs root (make test runs as root)")
        defer { umount(ro) }
        let v = try UnionNamespace(upper: nil, lowers: [ro, f.lower(0)], logger: .init(label: "t"))
        #expect(try v.names("d") == ["kept"])
        v.close()
    }
}
