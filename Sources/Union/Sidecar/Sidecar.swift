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
        try self.read("load layer records", LayerRecords.load)
    }
}

/// In-memory mirror of a layer's directory-scoped sidecar records, keyed by directory inode.
struct LayerRecords: Sendable {
    var whiteouts: [UInt64: Set<[UInt8]>] = [:]
    var opaque: Set<UInt64> = []
    var redirects: [UInt64: [UInt8]] = [:]
    /// Records left out at load because a name in them could leave a directory (see `load`).
    var rejected = 0

    func isWhiteout(dirIno: UInt64, _ name: [UInt8]) -> Bool {
        self.whiteouts[dirIno]?.contains(name) ?? false
    }

    /// Reads the records. A sidecar is input like the wire (a lower's may come from anywhere): a whiteout name must
    /// be a valid name and a redirect a relative path of valid names (no `..`, `.`, empty component or leading `/`),
    /// else the record is left out (counted in `rejected`), so following a redirect never leaves the layers' roots.
    static func load(_ db: Database) throws -> LayerRecords {
        var r = LayerRecords()
        guard try db.tableExists(WhiteoutRecord.databaseTableName) else { return r }
        for w in try WhiteoutRecord.fetchAll(db) {
            let name = [UInt8](w.name)
            guard Self.isValidName(name) else {
                r.rejected += 1
                continue
            }
            r.whiteouts[UInt64(bitPattern: w.dirIno), default: []].insert(name)
        }
        for o in try OpaqueRecord.fetchAll(db) { r.opaque.insert(UInt64(bitPattern: o.dirIno)) }
        for d in try RedirectRecord.fetchAll(db) {
            let path = [UInt8](d.path)
            guard Self.isValidRedirect(path) else {
                r.rejected += 1
                continue
            }
            r.redirects[UInt64(bitPattern: d.dirIno)] = path
        }
        return r
    }

    static func isValidName(_ name: [UInt8]) -> Bool {
        do throws(UnionError) {
            try Names.validate(name)
            return true
        } catch {
            return false
        }
    }

    /// A union path below the root: 1 to 4096 bytes, components split on every `/`, each a valid name.
    static func isValidRedirect(_ path: [UInt8]) -> Bool {
        guard !path.isEmpty, path.count <= 4096 else { return false }
        return path.split(separator: 0x2f, omittingEmptySubsequences: false).allSatisfy { Self.isValidName(Array($0)) }
    }
}
