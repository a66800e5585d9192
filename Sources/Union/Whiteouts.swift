import Foundation
import GRDB

/// A set of changes to the upper layer's directory-scoped sidecar records, committed in one transaction (one
/// `write { }` per invariant) and then mirrored in memory.
struct RecordChange {
    var addWhiteouts: [(dirIno: UInt64, name: [UInt8])] = []
    var dropWhiteouts: [(dirIno: UInt64, name: [UInt8])] = []
    var addOpaque: [UInt64] = []
    var setRedirects: [(dirIno: UInt64, path: [UInt8])] = []
    /// Directories that went away (or inodes that are new): every record keyed by them is dropped first.
    var clearDirectories: [UInt64] = []
    /// Objects one of whose lower names the change hides (a whiteout over a lower hard link): see
    /// `IdentityStore.lowerNameGone`. Committed in the same transaction, so nlink never disagrees with the whiteout.
    var lowerNamesGone: [UInt64] = []

    var isEmpty: Bool {
        self.addWhiteouts.isEmpty && self.dropWhiteouts.isEmpty && self.addOpaque.isEmpty && self.setRedirects.isEmpty
            && self.clearDirectories.isEmpty && self.lowerNamesGone.isEmpty
    }
}

extension UnionNamespace {
    /// Commits `change` durably (the sidecar runs with synchronous = FULL), then updates the in-memory mirror.
    func commit(_ change: RecordChange, _ what: String) throws(UnionError) {
        guard !change.isEmpty else { return }
        guard let upper = self.upper else { throw .readOnly }
        let newWhiteouts = try self.upperRecords.withLock { (r) throws(UnionError) -> Int in
            try upper.sidecar.write(what) { db in
                for d in change.clearDirectories {
                    let k = Int64(bitPattern: d)
                    try db.execute(sql: "DELETE FROM whiteout WHERE dirIno = ?", arguments: [k])
                    try db.execute(sql: "DELETE FROM opaque WHERE dirIno = ?", arguments: [k])
                    try db.execute(sql: "DELETE FROM redirect WHERE dirIno = ?", arguments: [k])
                }
                for w in change.dropWhiteouts {
                    try db.execute(
                        sql: "DELETE FROM whiteout WHERE dirIno = ? AND name = ?",
                        arguments: [Int64(bitPattern: w.dirIno), Data(w.name)])
                }
                for w in change.addWhiteouts {
                    try WhiteoutRecord(dirIno: Int64(bitPattern: w.dirIno), name: Data(w.name)).save(db)
                }
                for o in change.addOpaque { try OpaqueRecord(dirIno: Int64(bitPattern: o)).save(db) }
                for d in change.setRedirects {
                    try RedirectRecord(dirIno: Int64(bitPattern: d.dirIno), path: Data(d.path)).save(db)
                }
                try IdentityStore.recordLowerNamesGone(db, change.lowerNamesGone)
            }
            // Whiteout records that did not exist before (a re-committed one is not a new whiteout).
            var added = 0
            for d in change.clearDirectories {
                r.whiteouts[d] = nil
                r.opaque.remove(d)
                r.redirects[d] = nil
            }
            for w in change.dropWhiteouts {
                r.whiteouts[w.dirIno]?.remove(w.name)
                if r.whiteouts[w.dirIno]?.isEmpty == true { r.whiteouts[w.dirIno] = nil }
            }
            for w in change.addWhiteouts {
                if r.whiteouts[w.dirIno, default: []].insert(w.name).inserted { added += 1 }
            }
            for o in change.addOpaque { r.opaque.insert(o) }
            for d in change.setRedirects { r.redirects[d.dirIno] = d.path }
            return added
        }
        self.identities.lowerNamesGoneCommitted(change.lowerNamesGone)
        if newWhiteouts > 0 { self.stats.whiteoutsCreated.add(UInt64(newWhiteouts), ordering: .relaxed) }
    }

    func clearDirectoryRecords(_ inodes: [UInt64]) throws(UnionError) {
        guard self.upper != nil, !inodes.isEmpty else { return }
        let known = self.upperRecords.withLock { r in
            inodes.filter { r.whiteouts[$0] != nil || r.opaque.contains($0) || r.redirects[$0] != nil }
        }
        var c = RecordChange()
        c.clearDirectories = known
        try self.commit(c, "clear records of removed directories")
    }
}
