import Foundation
import GRDB

/// Another name of a hard-linked object (the identity record holds one name; a handle must still resolve when that
/// name is removed while other links remain).
struct LinkNameRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "linkName"
    @BitPattern var fileid: UInt64
    @BitPattern var parent: UInt64
    var name: Data
}
