import Foundation
import GRDB

/// One sidecar connection per layer, opened once (GRDB: one DatabaseQueue per database file).
///
/// Durability: WAL journal with `synchronous = FULL`, set after opening (GRDB would leave NORMAL), so a committed
/// write is on disk before `write` returns.
final class Sidecar: Sendable {
    let queue: DatabaseQueue
    let path: String

    /// Opens (creating and migrating if `readOnly` is false) the sidecar at `path`; `nil` path = in memory.
    init(path: String?, readOnly: Bool) throws(UnionError) {
        self.path = path ?? ":memory:"
        do {
            var config = Configuration()
            config.readonly = readOnly
            config.label = "strata.sidecar"
            if let path {
                self.queue = try DatabaseQueue(path: path, configuration: config)
            } else {
                self.queue = try DatabaseQueue(configuration: config)
            }
            if !readOnly {
                try self.queue.writeWithoutTransaction { db in
                    if path != nil { try db.execute(sql: "PRAGMA journal_mode = WAL") }
                    try db.execute(sql: "PRAGMA synchronous = FULL")
                }
                try SidecarMigrations.migrator.migrate(self.queue)
            }
        } catch {
            throw .sidecar("open \(path ?? ":memory:"): \(error)")
        }
    }

    func write<T>(_ what: String, _ body: (Database) throws -> T) throws(UnionError) -> T {
        do {
            return try self.queue.write(body)
        } catch let e as UnionError {
            throw e
        } catch {
            throw .sidecar("\(what) in \(self.path): \(error)")
        }
    }

    func read<T>(_ what: String, _ body: (Database) throws -> T) throws(UnionError) -> T {
        do {
            return try self.queue.read(body)
        } catch {
            throw .sidecar("\(what) in \(self.path): \(error)")
        }
    }

    func close() {
        try? self.queue.close()
    }

    /// The directory-scoped records of a layer (whiteouts, opaque markers, redirects), loaded at once.
    func loadLayerRecords() throws(UnionError) -> LayerRecords {
        try self.read("load layer records") { db in
            var r = LayerRecords()
            if try db.tableExists(WhiteoutRecord.databaseTableName) {
                for w in try WhiteoutRecord.fetchAll(db) {
                    r.whiteouts[UInt64(bitPattern: w.dirIno), default: []].insert([UInt8](w.name))
                }
                for o in try OpaqueRecord.fetchAll(db) { r.opaque.insert(UInt64(bitPattern: o.dirIno)) }
                for d in try RedirectRecord.fetchAll(db) {
                    r.redirects[UInt64(bitPattern: d.dirIno)] = [UInt8](d.path)
                }
            }
            return r
        }
    }
}

/// In-memory mirror of a layer's directory-scoped sidecar records, keyed by directory inode.
struct LayerRecords: Sendable {
    var whiteouts: [UInt64: Set<[UInt8]>] = [:]
    var opaque: Set<UInt64> = []
    var redirects: [UInt64: [UInt8]] = [:]

    func isWhiteout(dirIno: UInt64, _ name: [UInt8]) -> Bool {
        self.whiteouts[dirIno]?.contains(name) ?? false
    }
}
