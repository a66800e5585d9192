import GRDB

/// Namespace-wide values: `namespaceID` (random, part of every file handle).
struct MetaRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "meta"
    var key: String
    var value: Int64
}
