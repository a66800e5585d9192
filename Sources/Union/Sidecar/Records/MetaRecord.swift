import GRDB

/// Namespace-wide values: `namespaceID` (random; the fsid of its attributes), the handle and cookie keys.
struct MetaRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "meta"
    var key: String
    @BitPattern var value: UInt64
}
