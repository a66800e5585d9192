import GRDB

/// Namespace-wide values: `namespaceID` (random; the fsid of its attributes), the handle and cookie keys.
struct MetaRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "meta"
    var key: String
    @BitPattern var value: UInt64
}

extension MetaRecord {
    /// The rows of `keys` (raw SQL: `fetchEvery`).
    static func fetchAll(_ db: Database, keys: [String]) throws -> [MetaRecord] {
        let marks = Array(repeating: "?", count: keys.count).joined(separator: ", ")
        return try MetaRecord.fetchAll(
            db, sql: "SELECT * FROM \(Self.databaseTableName) WHERE key IN (\(marks))",
            arguments: StatementArguments(keys))
    }

    /// The row of `key` (raw SQL: `fetchEvery`).
    static func fetchOne(_ db: Database, named key: String) throws -> MetaRecord? {
        try MetaRecord.fetchOne(db, sql: "SELECT * FROM \(Self.databaseTableName) WHERE key = ?", arguments: [key])
    }
}

extension FetchableRecord where Self: TableRecord {
    /// Every row of the record's table, through raw SQL. A namespace's open (a client's first MNT) reads a dozen
    /// tables, mostly empty, and GRDB's query interface spent more generating each statement's SQL than SQLite spent
    /// running it: about 40 % of an MNT's CPU.
    static func fetchEvery(_ db: Database) throws -> [Self] {
        try Self.fetchAll(db, sql: "SELECT * FROM \(Self.databaseTableName)")
    }
}
