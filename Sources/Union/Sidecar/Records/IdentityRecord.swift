import Foundation
import GRDB

/// The identity of one union object: its fileid, where it was first seen (its origin: layer index and inode, the
/// key that keeps a fileid stable across copy-up), its upper inode once it lives in the upper layer, and how to find
/// it now (parent fileid + name, updated on rename) to resolve a file handle after a restart.
struct IdentityRecord: Codable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "identity"
    @BitPattern var fileid: UInt64? = nil
    @BitPattern var parent: UInt64
    var name: Data
    var originLayer: Int64
    @BitPattern var originIno: UInt64
    @BitPattern var upperIno: UInt64? = nil
    /// A copy-up of a hard-linked lower file keeps a link under the upper layer's `index/` directory so every
    /// other name of the lower inode shows the upper copy.
    var isIndexed: Bool
    /// The lower inode's link count at copy-up (how many lower names the object had then).
    var lowerLinkCount: Int64
    /// How many lower names of the origin inode no longer show the object: copied or linked up into the upper layer
    /// (they count there), whited out, or replaced by a rename. Kept for lower objects too (a whiteout before any
    /// copy-up). A union nlink is the number of visible names: see `UnionNamespace.attributes`.
    var lowerNamesGone: Int64 = 0

    mutating func didInsert(_ inserted: InsertionSuccess) {
        self.fileid = UInt64(bitPattern: inserted.rowID)
    }
}
