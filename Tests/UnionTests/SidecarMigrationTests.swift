import Foundation
import GRDB
import Testing

@testable import Union

/// Migrations of a sidecar made by an older version: what it recorded stays, and so do its guarantees.
@Suite struct SidecarMigrationTests {
    /// Migration v6 drops AUTOINCREMENT from the identity table. A sidecar made before it keeps every row and both
    /// unique indexes, and never gives a fileid twice: the highest fileid AUTOINCREMENT kept (its row deleted since,
    /// in a store from before fileid reservations) becomes the reservation, and allocation goes on above it.
    @Test func theIdentityTableLosesAutoincrementAndNoFileidComesBack() throws {
        let f = Fixture()
        let path = f.base + "/layer.db"
        do {
            let queue = try DatabaseQueue(path: path)
            try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = WAL") }
            try SidecarMigrations.migrator.migrate(queue, upTo: "v5-layer-format")
            try queue.write { db in
                for fileid in UInt64(1)...5 {
                    try IdentityStore.insert(
                        IdentityRecord(
                            fileid: fileid, parent: fileid == 1 ? 0 : 1,
                            name: Data(fileid == 1 ? [] : [0x60 + UInt8(fileid)]),
                            originLayer: 0, originIno: 100 + fileid, upperIno: 100 + fileid, isIndexed: false,
                            lowerLinkCount: 1, lowerNamesGone: fileid == 3 ? 2 : 0), db)
                }
                try db.execute(sql: "DELETE FROM identity WHERE fileid = 5")
                try db.execute(sql: "DELETE FROM meta WHERE key = 'fileidReserved'")
                #expect(try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'identity'") == 5)
            }
            try queue.close()
        }
        let sidecar = try Sidecar(path: path, readOnly: false)
        defer { sidecar.close() }
        try sidecar.read("check the migrated schema") { db in
            let table = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'identity'") ?? ""
            #expect(!table.uppercased().contains("AUTOINCREMENT"), "\(table)")
            #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_sequence WHERE name = 'identity'") == 0)
            #expect(try MetaRecord.fetchOne(db, key: "fileidReserved")?.value == 5)
            let indexes = try Row.fetchAll(db, sql: "PRAGMA index_list(identity)")
            let unique = Set(indexes.filter { ($0["unique"] as Int64?) == 1 }.compactMap { $0["name"] as String? })
            #expect(unique.isSuperset(of: ["identity_origin", "identity_upper"]), "\(indexes)")
            let rows = try IdentityRecord.order(Column("fileid")).fetchAll(db)
            #expect(rows.map(\.fileid) == [1, 2, 3, 4])
            #expect(rows[2].name == Data([0x63]) && rows[2].upperIno == 103 && rows[2].lowerNamesGone == 2)
        }
        let store = try IdentityStore(sidecar: sidecar)
        let made = try store.fileid(
            .init(key: .init(layer: 0, ino: 900, isUpper: true), parent: 1, name: Array("new".utf8)))
        #expect(made > 5, "fileid \(made) was given before the migration")
        #expect(try store.fileid(.init(key: .init(layer: 0, ino: 102, isUpper: true), parent: 1, name: [0x62])) == 2)
        try store.commits.drain()
        try sidecar.read("check the new row") { db in
            let sequenceRows = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_sequence WHERE name = 'identity'")
            #expect(sequenceRows == 0)
            let row = try IdentityRecord.fetchOne(db, key: made.sqliteValue)
            #expect(row?.upperIno == 900)
        }
    }

    /// What v6 is for: the transaction that records a new object writes the identity table and its two indexes to
    /// the WAL, not `sqlite_sequence` as well (a page a batch less on every CREATE, MKDIR, SYMLINK, ...).
    @Test func recordingAnObjectWritesNoSequencePage() throws {
        let f = Fixture()
        let sidecar = try Sidecar(path: f.base + "/layer.db", readOnly: false)
        defer { sidecar.close() }
        let pageSize = try sidecar.read("page size") { db in try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0 }
        func walFrames() -> Int {
            var st = stat()
            guard stat(f.base + "/layer.db-wal", &st) == 0, st.st_size > 32 else { return 0 }
            return (Int(st.st_size) - 32) / (pageSize + 24)
        }
        func record(_ fileid: UInt64) throws {
            try sidecar.write("record an object") { db in
                try IdentityStore.insert(
                    IdentityRecord(
                        fileid: fileid, parent: 1, name: Data("f\(fileid)".utf8), originLayer: 0, originIno: fileid,
                        upperIno: fileid, isIndexed: false, lowerLinkCount: 1), db)
            }
        }
        for fileid in UInt64(10)..<20 { try record(fileid) }  // the pages exist and hold rows already
        let before = walFrames()
        try record(20)
        #expect(walFrames() - before == 3, "WAL frames written for one new identity row")
    }
}
