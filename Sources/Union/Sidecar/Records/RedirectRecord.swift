import Foundation
import GRDB

/// A directory redirect (overlayfs redirect_dir): the layers below the one holding directory `dirIno` contribute
/// the directory found at `path` (components joined by `/`, looked up from the root through those layers) instead
/// of the directory's own path.
struct RedirectRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "redirect"
    @BitPattern var dirIno: UInt64
    var path: Data
}
