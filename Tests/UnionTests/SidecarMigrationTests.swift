import Foundation
import GRDB
import Logging
import Synchronization
import Testing

@testable import Union

/// Migrations of a sidecar made by an older version: what it recorded stays, and so do its guarantees.
@Suite struct SidecarMigrationTests {
    /// Migration v6 drops AUTOINCREMENT from the identity table (and v7 its two indexes). A sidecar made before them
    /// keeps every row, and never gives a fileid twice: the highest fileid AUTOINCREMENT kept (its row deleted since,
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
            let indexes = try Row.fetchAll(db, sql: "PRAGMA index_list(identity)").compactMap { $0["name"] as String? }
            #expect(!indexes.contains("identity_origin") && !indexes.contains("identity_upper"), "\(indexes)")
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

    /// What v6 and v7 are for: the transaction that records a new object writes one page to the WAL, the identity
    /// table's leaf: not `sqlite_sequence` (v6) nor a leaf of an index by origin and one by upper inode (v7), which
    /// made it four pages on every CREATE, MKDIR, SYMLINK, ...
    @Test func recordingAnObjectWritesOnePage() throws {
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
        #expect(walFrames() - before == 1, "WAL frames written for one new identity row")
    }

    /// Without unique indexes (v7) the store keeps one row per upper inode and per origin itself: a sidecar holding two
    /// rows that claim one (written by hand here; no code path writes them) loses the older at the next open, which
    /// says so, and the newer keeps its fileid.
    @Test func anOlderRowClaimingAnotherRowsInodeIsDeletedAtOpen() throws {
        let f = Fixture()
        let path = f.base + "/layer.db"
        do {
            let sidecar = try Sidecar(path: path, readOnly: false)
            try sidecar.write("rows that claim one key twice") { db in
                func row(_ fileid: UInt64, name: String, layer: Int64, origin: UInt64, upper: UInt64?) -> IdentityRecord
                {
                    IdentityRecord(
                        fileid: fileid, parent: fileid == 1 ? 0 : 1, name: Data(name.utf8), originLayer: layer,
                        originIno: origin, upperIno: upper, isIndexed: false, lowerLinkCount: 1)
                }
                try IdentityStore.insert(row(1, name: "", layer: 0, origin: 100, upper: 100), db)
                try IdentityStore.insert(row(2, name: "old", layer: 0, origin: 200, upper: 200), db)
                try IdentityStore.insert(row(3, name: "lower", layer: 1, origin: 55, upper: nil), db)
                try IdentityStore.insert(row(7, name: "new", layer: 0, origin: 201, upper: 200), db)
                try IdentityStore.insert(row(9, name: "again", layer: 1, origin: 55, upper: 300), db)
                try IdentityStore.insert(row(10, name: "other", layer: 0, origin: 400, upper: 400), db)
                try LinkNameRecord(fileid: 2, parent: 1, name: Data("old2".utf8)).save(db)
            }
            sidecar.close()
        }
        let sidecar = try Sidecar(path: path, readOnly: false)
        defer { sidecar.close() }
        let warnings = Warnings()
        let logger = Logger(label: "migration-test") { _ in WarningCapture(warnings: warnings) }
        let store = try IdentityStore(sidecar: sidecar, logger: logger)
        #expect(store.identity(2) == nil && store.identity(3) == nil)
        #expect(store.identity(7)?.upperIno == 200 && store.identity(9)?.upperIno == 300)
        #expect(store.hasUpperRow(200) && store.hasUpperRow(400))
        #expect(
            try store.fileid(.init(key: .init(layer: 0, ino: 200, isUpper: true), parent: 1, name: Array("new".utf8)))
                == 7)
        #expect(warnings.lines.withLock { $0.contains { $0.contains("older rows were deleted") } })
        let (left, linkNames) = try sidecar.read("the rows left") { db in
            (try IdentityRecord.order(Column("fileid")).fetchAll(db).map(\.fileid), try LinkNameRecord.fetchCount(db))
        }
        #expect(left == [1, 7, 9, 10] && linkNames == 0)
    }
}

/// The messages of warnings and above.
private final class Warnings: Sendable {
    let lines = Mutex<[String]>([])
}

private struct WarningCapture: LogHandler {
    let warnings: Warnings
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .warning
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }
    func log(event: LogEvent) { self.warnings.lines.withLock { $0.append("\(event.message)") } }
}
