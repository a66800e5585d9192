import Foundation
import GRDB
import Glibc
import Logging
import Testing

@testable import Union

/// Lower objects take fileids derived from their layer and inode (`DerivedFileids`): a first sighting needs no flush
/// before its reply, and a handle whose row a crash lost still resolves to the same object, with the same fileid.
@Suite struct DerivedFileidTests {
    /// Deletes identity rows from a closed layer's sidecar, as a crash before their group commit would leave it.
    static func loseRows(_ database: String, _ fileids: [UInt64]) throws {
        let queue = try DatabaseQueue(path: database)
        defer { try? queue.close() }
        try queue.write { db in
            for fileid in fileids {
                try db.execute(sql: "DELETE FROM identity WHERE fileid = ?", arguments: [Int64(bitPattern: fileid)])
            }
        }
    }

    @Test func lowerObjectsNumberFromTheirLayerAndInode() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/x", "x")
        let u = try f.open()
        defer { u.close() }
        let (_, attributes) = try u.walk("d/x")
        var st = stat()
        #expect(stat(f.lower(0) + "/d/x", &st) == 0)
        #expect(attributes.fileid == DerivedFileids.fileid(layer: 1, ino: UInt64(st.st_ino)))
        #expect(DerivedFileids.origin(attributes.fileid) == OriginKey(layer: 1, ino: UInt64(st.st_ino)))
        // Upper objects are numbered by the store's counter, below every derived fileid.
        try u.mkfile("d", "new")
        #expect(try u.walk("d/new").1.fileid < DerivedFileids.base)
    }

    /// The rows of a listing's objects are lost (a crash before their group commit): every handle the listing gave
    /// still resolves, to the same object and fileid, in a directory and below it.
    @Test func handlesSurviveTheLossOfTheirRows() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/e/deep", "deep")
        f.file(f.lower(0) + "/d/x", "x")
        var u = try f.open()
        let paths = ["d", "d/e", "d/e/deep", "d/x"]
        let handles = try paths.map { try u.h($0) }
        let fileids = try paths.map { try u.walk($0).1.fileid }
        u.close()
        try Self.loseRows(f.upper + "/layer.db", fileids)
        u = try f.open()
        defer { u.close() }
        // Deepest first: nothing on the way is known.
        #expect(try u.getattr(handles[2]).fileid == fileids[2])
        #expect(try u.contents("d/e/deep") == "deep")
        for (handle, fileid) in zip(handles, fileids) { #expect(try u.getattr(handle).fileid == fileid) }
        let rediscoveries = u.stats.rediscoveries.load(ordering: .relaxed)
        #expect(rediscoveries >= 1)
        // Found again, they are known again: a change keeps the fileid.
        try u.put("d/x", "changed")
        #expect(try u.getattr(handles[3]).fileid == fileids[3])
    }

    /// A directory renamed in the union shows its lower content under the new name: a lost row of an object in it is
    /// found there (its renamed ancestor's row is durable with the rename).
    @Test func anObjectUnderARenamedDirectoryIsFoundUnderItsNewName() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/x", "x")
        var u = try f.open()
        let hx = try u.h("d/x")
        try u.rename(from: u.rootHandle, b("d"), to: u.rootHandle, b("renamed"), as: root)
        #expect(try u.contents("renamed/x") == "x")
        u.close()
        try Self.loseRows(f.upper + "/layer.db", [hx.fileid])
        u = try f.open()
        defer { u.close() }
        #expect(try u.getattr(hx).fileid == hx.fileid)
        #expect(try u.walk("renamed/x").1.fileid == hx.fileid)
    }

    /// A removed lower object's handle stays stale, before and after a reopen (the search finds its inode, but the
    /// union shows it nowhere), and a second presentation searches no more.
    @Test func aRemovedLowerObjectStaysStale() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/x", "x")
        var u = try f.open()
        let hx = try u.h("d/x")
        try u.remove(in: u.h("d"), b("x"), as: root)
        #expect(throws: UnionError.stale) { try u.getattr(hx) }
        u.close()
        u = try f.open()
        defer { u.close() }
        #expect(throws: UnionError.stale) { try u.getattr(hx) }
        #expect(u.identities.isUnfound(hx.fileid))
        #expect(throws: UnionError.stale) { try u.getattr(hx) }
        let rediscoveries = u.stats.rediscoveries.load(ordering: .relaxed)
        #expect(rediscoveries == 0)
    }

    /// When the stack of lowers changes, the same layer index and inode may be another object: the store stops
    /// deriving for good (recorded), and old handles of lower objects are stale.
    @Test func aChangedStackEndsDerivation() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/x", "x")
        var u = try f.open()
        let hx = try u.h("x")
        #expect(DerivedFileids.origin(hx.fileid) != nil)
        u.close()
        f.file(f.lower(1) + "/y", "y")
        u = try f.open(lowers: 2)
        let derives = u.identities.derivesFileids.load(ordering: .relaxed)
        #expect(!derives)
        #expect(throws: UnionError.stale) { try u.getattr(hx) }
        #expect(try u.walk("y").1.fileid < DerivedFileids.base)
        #expect(try u.walk("x").1.fileid != hx.fileid)
        u.close()
        u = try f.open(lowers: 2)
        defer { u.close() }
        let derivesAfterReopen = u.identities.derivesFileids.load(ordering: .relaxed)
        #expect(!derivesAfterReopen)
    }

    /// A listing's rows are committed without anyone waiting for them: they are durable soon after, with no change.
    @Test func aListingsRowsAreCommittedInTheBackground() throws {
        let f = Fixture()
        for k in 0..<50 { f.file(f.lower(0) + "/d/f\(k)") }
        let u = try f.open()
        defer { u.close() }
        #expect(try u.names("d").count == 50)
        let committed = eventually(10) {
            let rows = try? u.identities.sidecar.read("rows") { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM identity") ?? 0
            }
            return (rows ?? 0) >= 52  // the upper's root, d, and its 50 files
        }
        #expect(committed)
    }
    /// A directory copy-up publishes the copy without waiting for its row: when a crash lost the row, the upper
    /// directory takes the identity of the lower one it merges, in a listing as in a LOOKUP, and a rename keeps it.
    @Test func aCopiedUpDirectoryKeepsItsFileidWhenItsRowIsLost() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/x", "x")
        var u = try f.open()
        let hd = try u.h("d")
        try u.mkfile("d", "new", "n")
        #expect(f.exists(f.upper + "/tree/d/new"))
        u.close()
        try Self.loseRows(f.upper + "/layer.db", [hd.fileid])
        u = try f.open()
        defer { u.close() }
        let listed = try u.readdir(u.rootHandle, after: 0, as: root).entries.first { $0.name == b("d") }
        #expect(listed?.fileid == hd.fileid)
        #expect(try u.getattr(hd).fileid == hd.fileid)
        #expect(try u.walk("d").1.fileid == hd.fileid)
        #expect(try u.contents("d/new") == "n")
        #expect(try u.contents("d/x") == "x")
        try u.rename(from: u.rootHandle, b("d"), to: u.rootHandle, b("e"), as: root)
        #expect(try u.getattr(hd).fileid == hd.fileid)
        #expect(try u.walk("e").1.fileid == hd.fileid)
        #expect(try u.names("e") == ["new", "x"])
    }

    /// A directory made where a lower one was removed is opaque and a new object: without its row it does not take
    /// the removed directory's identity, whose handle stays stale.
    @Test func aDirectoryMadeOverARemovedLowerOneIsANewObject() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/x", "x")
        var u = try f.open()
        let old = try u.h("d")
        try u.remove(in: old, b("x"), as: root)
        try u.rmdir(in: u.rootHandle, b("d"), as: root)
        _ = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root)
        let made = try u.h("d")
        u.close()
        try Self.loseRows(f.upper + "/layer.db", [made.fileid])
        u = try f.open()
        defer { u.close() }
        #expect(throws: UnionError.stale) { try u.getattr(old) }
        #expect(try u.walk("d").1.fileid != old.fileid)
        #expect(try u.names("d") == [])
    }
}
