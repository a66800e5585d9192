import Foundation
import GRDB

/// A whiteout: `name` in the layer directory with inode `dirIno` hides that name in every layer below.
struct WhiteoutRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "whiteout"
    @BitPattern var dirIno: UInt64
    var name: Data
}
