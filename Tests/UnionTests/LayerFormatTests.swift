import Foundation
import GRDB
import Glibc
import Testing

@testable import Union

/// What counts as a Strata layer, and what a lower's sidecar may make the union do.
@Suite struct LayerFormatTests {
    /// A Strata layer at `dir` (made as an upper) holding the empty directory `d`; returns d's inode in `tree/`.
    static func strataLayer(_ f: Fixture, _ dir: String) throws -> UInt64 {
        let u = try UnionNamespace(upper: dir, lowers: [], logger: .init(label: "t"))
        _ = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root)
        u.close()
        var st = stat()
        #expect(stat(dir + "/tree/d", &st) == 0)
        return UInt64(st.st_ino)
    }

    static func edit(_ dir: String, _ body: (Database) throws -> Void) throws {
        let s = try Sidecar(path: dir + "/layer.db", readOnly: false)
        defer { s.close() }
        try s.write("test edit", body)
    }

    @Test(arguments: [
        "../outside", "../../../../../../../../etc", "..", "d/../../outside", "/outside", "outside/", "./outside",
        "outside//x", "",
    ])
    func hostileRedirectNeverLeavesTheLayers(_ target: String) throws {
        let f = Fixture()
        f.file(f.base + "/outside/secret", "S")
        f.file(f.lower(0) + "/outside/inside", "I")  // what a lower-relative "outside" would name
        let hostile = f.base + "/hostile"
        let ino = try Self.strataLayer(f, hostile)
        try Self.edit(hostile) { db in
            try RedirectRecord(dirIno: ino, path: Data(target.utf8)).insert(db)
            try WhiteoutRecord(dirIno: ino, name: Data("../x".utf8)).insert(db)
        }
        let records = try LayerFormat.withStrataSidecar(hostile, LayerRecords.load)
        #expect(records?.redirects.isEmpty == true && records?.whiteouts.isEmpty == true && records?.rejected == 2)

        let u = try UnionNamespace(upper: nil, lowers: [hostile, f.lower(0)], logger: .init(label: "t"))
        defer { u.close() }
        #expect(try u.names("d") == [])
        #expect(throws: UnionError.noEntry) { try u.walk("d/secret") }
        #expect(throws: UnionError.noEntry) { try u.walk("d/passwd") }
        #expect(throws: UnionError.noEntry) { try u.walk("d/inside") }
        #expect(try u.names("") == ["d", "outside"])
        #expect(try LayerTools.inspect(layerDirectory: hostile).redirects.isEmpty)
    }

    /// The same layer with a valid redirect still merges what it names (the check does not break redirects).
    @Test func validRedirectStillMerges() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/old/sub/file", "F")
        let layer = f.base + "/layer"
        let ino = try Self.strataLayer(f, layer)
        try Self.edit(layer) { db in try RedirectRecord(dirIno: ino, path: Data("old/sub".utf8)).insert(db) }
        let u = try UnionNamespace(upper: nil, lowers: [layer, f.lower(0)], logger: .init(label: "t"))
        defer { u.close() }
        #expect(try u.names("d") == ["file"])
        #expect(try u.contents("d/file") == "F")
    }

    @Test func plainImageWithTreeAndForeignLayerDBIsPlain() throws {
        let f = Fixture()
        let strata = f.base + "/strata"
        _ = try Self.strataLayer(f, strata)
        // 1: any file called layer.db; 2: an SQLite database some other program made; 3: a real Strata layer.db
        // next to a tree/ that is a symlink.
        f.files(lower: 0, ["/tree/x": "X", "/layer.db": "not a database"])
        f.file(f.lower(1) + "/tree/y", "Y")
        let other = try DatabaseQueue(path: f.lower(1) + "/layer.db")
        try other.write { db in
            try db.execute(sql: "CREATE TABLE whiteout (dirIno INTEGER, name BLOB)")
            try db.execute(sql: "CREATE TABLE meta (key TEXT, value INTEGER)")
        }
        try other.close()
        f.mkdir(f.lower(2))
        #expect(copyfile(strata + "/layer.db", f.lower(2) + "/layer.db"))
        #expect(Glibc.symlink(strata + "/tree", f.lower(2) + "/tree") == 0)

        for i in 0..<3 {
            #expect(try LayerFormat.isStrataLayer(f.lower(i)) == false)
            #expect(try LayerTools.inspect(layerDirectory: f.lower(i)).kind == .plain)
        }
        #expect(try LayerFormat.isStrataLayer(strata))
        let u = try UnionNamespace(upper: nil, lowers: [f.lower(0), f.lower(1), f.lower(2)], logger: .init(label: "t"))
        defer { u.close() }
        #expect(try u.names("") == ["layer.db", "tree"])
        #expect(try u.names("tree") == ["x", "y"])
        #expect(try u.contents("layer.db") == "not a database")
        #expect(throws: LayerToolError.self) { try LayerTools.promote(upper: f.lower(1), to: f.base + "/p") }
    }

    /// Layers made before the format row are recognised by Strata's recorded schema; a newer format is refused.
    @Test func formatRowAndItsAbsence() throws {
        let f = Fixture()
        let layer = f.base + "/layer"
        _ = try Self.strataLayer(f, layer)
        f.file(f.lower(0) + "/d/hidden", "H")
        let u0 = try UnionNamespace(upper: f.upper, lowers: [layer, f.lower(0)], logger: .init(label: "t"))
        try u0.remove(in: u0.h("d"), b("hidden"), as: root)
        u0.close()
        try Self.edit(f.upper) { db in
            try db.execute(sql: "DELETE FROM meta WHERE key = ?", arguments: [LayerFormat.markerKey])
        }
        #expect(try LayerFormat.isStrataLayer(f.upper))
        let u1 = try UnionNamespace(upper: nil, lowers: [f.upper, layer, f.lower(0)], logger: .init(label: "t"))
        #expect(try u1.names("d") == [])  // the old upper's whiteout still applies
        u1.close()

        try Self.edit(layer) { db in
            try db.execute(
                sql: "UPDATE meta SET value = ? WHERE key = ?",
                arguments: [LayerFormat.version + 1, LayerFormat.markerKey])
        }
        #expect(throws: UnionError.self) { try LayerFormat.isStrataLayer(layer) }
        #expect(throws: UnionError.self) { try UnionNamespace(upper: nil, lowers: [layer], logger: .init(label: "t")) }
    }
}

/// The sidecar's UInt64 columns (inodes, fileids, keys) are SQLite integers holding the value's bit pattern.
@Suite struct RecordColumnTests {
    @Test func valuesAboveInt64MaxKeepTheirBitPattern() throws {
        let f = Fixture()
        let s = try Sidecar(path: f.base + "/layer.db", readOnly: false)
        defer { s.close() }
        let high: UInt64 = 1 << 63 | 5
        try s.write("test write") { db in
            try WhiteoutRecord(dirIno: high, name: Data("x".utf8)).insert(db)
            var identity = IdentityRecord(
                fileid: high, parent: .max, name: Data("y".utf8), originLayer: 1, originIno: high, isIndexed: false,
                lowerLinkCount: 1)
            try identity.insert(db)
        }
        try s.read("test read") { db in
            #expect(try Int64.fetchOne(db, sql: "SELECT dirIno FROM whiteout") == Int64(bitPattern: high))
            #expect(try Int64.fetchOne(db, sql: "SELECT parent FROM identity") == -1)
            #expect(try WhiteoutRecord.fetchOne(db)?.dirIno == high)
            let identity = try IdentityRecord.fetchOne(db, key: high.sqliteValue)
            #expect(identity?.fileid == high && identity?.parent == .max && identity?.originIno == high)
            #expect(identity.map { $0.upperIno == nil } == true)
        }
    }
}

/// Identity names are walked when a handle is resolved: one that could leave a directory is not loaded.
@Suite struct RecordedNameTests {
    @Test func identityWithAnEscapingNameIsIgnored() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "a", "A")
        let (h, _) = try u.walk("a")
        u.close()
        try LayerFormatTests.edit(f.upper) { db in
            try db.execute(
                sql: "UPDATE identity SET name = ? WHERE fileid = ?", arguments: [Data("..".utf8), Int64(h.fileid)])
        }
        let again = try f.open()
        defer { again.close() }
        #expect(again.identities.identity(h.fileid) == nil)
        #expect(throws: UnionError.stale) { try again.getattr(h) }
        #expect(try again.contents("a") == "A")  // the object itself is found by name, with a new fileid
        #expect(try again.walk("a").1.fileid != h.fileid)
    }
}

private func copyfile(_ from: String, _ to: String) -> Bool {
    (try? FileManager.default.copyItem(atPath: from, toPath: to)) != nil
}

/// `Files.mkdirAll`: what `mkdir -p` does, asking for the directory itself first.
@Suite struct MkdirAllTests {
    @Test func makesMissingParentsAndAcceptsWhatExists() throws {
        let f = Fixture(in: "/dev/shm")
        try Files.mkdirAll(f.base + "/a/b/c", mode: 0o750)
        var st = stat()
        #expect(stat(f.base + "/a/b/c", &st) == 0 && st.isDirectory)
        #expect(stat(f.base + "/a", &st) == 0 && st.st_mode & 0o777 == 0o750)
        try Files.mkdirAll(f.base + "/a/b/c")  // all there: nothing to do
        try Files.mkdirAll(f.base + "/a/b/d/")  // a trailing slash
        #expect(stat(f.base + "/a/b/d", &st) == 0 && st.isDirectory)
        f.file(f.base + "/a/file", "x")
        #expect(throws: UnionError.notDirectory) {
            try Files.mkdirAll(f.base + "/a/file/x/y")
        }
    }
}
