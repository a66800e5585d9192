import Foundation
import GRDB

/// A whiteout: `name` in the layer directory with inode `dirIno` hides that name in every layer below.
struct WhiteoutRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "whiteout"
    var dirIno: Int64
    var name: Data
}
