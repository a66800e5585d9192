import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct LayerToolsTests {
    static func tree(_ u: UnionNamespace) throws -> [String: String] {
        var out: [String: String] = [:]
        var queue = [""]
        while let d = queue.popLast() {
            for e in try u.readdir(u.h(d), after: 0, as: root).entries {
                let p =
                    d.isEmpty
                    ? String(decoding: e.name, as: UTF8.self) : d + "/" + String(decoding: e.name, as: UTF8.self)
                let a = try u.walk(p).1
                switch a.type {
                case .directory:
                    out[p] = "dir \(String(a.mode, radix: 8))"
                    queue.append(p)
                case .regular: out[p] = "file " + (try u.contents(p))
                default: out[p] = "\(a.type)"
                }
            }
        }
        return out
    }

    @Test func promotedUpperReproducesTheUnion() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/keep/a", "A")
        f.file(f.lower(0) + "/gone", "G")
        f.file(f.lower(0) + "/wiped/x", "X")
        f.file(f.lower(0) + "/moved/deep/y", "Y")
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
