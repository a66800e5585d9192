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
    /// Applies `change` to the in-memory mirror and queues its records for the next group commit (one change: one
    /// transaction). Returns the change's sequence number: a caller whose next step must not reach the disk before
    /// these records waits for it (`durable`); otherwise `mutate` waits once, after releasing the namespace lock.
    /// `afterSync`: the records may be committed only after the file system changes queued so far are durable.
    @discardableResult
    func commit(_ change: RecordChange, _ what: String, afterSync: Bool = false) throws(UnionError) -> UInt64 {
        guard !change.isEmpty else { return 0 }
        guard self.upper != nil else { throw .readOnly }
        let records: [SidecarRecord] = [
            { db in
                for d in change.clearDirectories {
                    let k = d.sqliteValue
                    try db.execute(sql: "DELETE FROM whiteout WHERE dirIno = ?", arguments: [k])
                    try db.execute(sql: "DELETE FROM opaque WHERE dirIno = ?", arguments: [k])
                    try db.execute(sql: "DELETE FROM redirect WHERE dirIno = ?", arguments: [k])
                }
                for w in change.dropWhiteouts {
                    try db.execute(
                        sql: "DELETE FROM whiteout WHERE dirIno = ? AND name = ?",
                        arguments: [w.dirIno.sqliteValue, Data(w.name)])
                }
                for w in change.addWhiteouts {
                    try WhiteoutRecord(dirIno: w.dirIno, name: Data(w.name)).save(db)
                }
                for o in change.addOpaque { try OpaqueRecord(dirIno: o).save(db) }
                for d in change.setRedirects {
                    try RedirectRecord(dirIno: d.dirIno, path: Data(d.path)).save(db)
                }
                try IdentityStore.recordLowerNamesGone(db, change.lowerNamesGone)
            }
        ]
        let (newWhiteouts, seq) = self.upperRecords.withLock { (r) -> (Int, UInt64) in
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
            let commits = self.identities.commits
            let seq = afterSync ? commits.enqueue([], afterSync: records) : commits.enqueue(records)
            return (added, seq)
        }
        self.identities.lowerNamesGoneCommitted(change.lowerNamesGone)
        if newWhiteouts > 0 { self.stats.whiteoutsCreated.add(UInt64(newWhiteouts), ordering: .relaxed) }
        return seq
    }

    /// Waits until change `seq` is durable: for a step that must not reach the disk before it (a whiteout before the
    /// unlink it covers, an opaque marker or redirect before the directory it describes is published, a copy-up's
    /// identity before its rename). Called under the namespace lock: these are the only flushes waited for there.
    func durable(_ seq: UInt64) throws(UnionError) {
        try self.identities.commits.waitDurable(seq)
    }

    /// Queues file system objects changed by the running change for the next group commit's sync.
    func changed(_ targets: SyncTarget...) {
        self.identities.commits.enqueue([], syncs: targets)
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
