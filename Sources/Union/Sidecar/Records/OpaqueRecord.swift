import GRDB

/// An opaque marker: the layer directory with inode `dirIno` hides everything below it.
struct OpaqueRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "opaque"
    @BitPattern var dirIno: UInt64
}
