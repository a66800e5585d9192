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
                for dirIno in change.clearDirectories {
                    let key = dirIno.sqliteValue
                    try db.execute(sql: "DELETE FROM whiteout WHERE dirIno = ?", arguments: [key])
                    try db.execute(sql: "DELETE FROM opaque WHERE dirIno = ?", arguments: [key])
                    try db.execute(sql: "DELETE FROM redirect WHERE dirIno = ?", arguments: [key])
                }
                for whiteout in change.dropWhiteouts {
                    try db.execute(
                        sql: "DELETE FROM whiteout WHERE dirIno = ? AND name = ?",
                        arguments: [whiteout.dirIno.sqliteValue, Data(whiteout.name)])
                }
                for whiteout in change.addWhiteouts {
                    try WhiteoutRecord(dirIno: whiteout.dirIno, name: Data(whiteout.name)).save(db)
                }
                for dirIno in change.addOpaque { try OpaqueRecord(dirIno: dirIno).save(db) }
                for redirect in change.setRedirects {
                    try RedirectRecord(dirIno: redirect.dirIno, path: Data(redirect.path)).save(db)
                }
                try IdentityStore.recordLowerNamesGone(db, change.lowerNamesGone)
            }
        ]
        let (newWhiteouts, seq) = self.upperRecords.withLock { (mirror) -> (Int, UInt64) in
            // Whiteout records that did not exist before (a re-committed one is not a new whiteout).
            var added = 0
            for dirIno in change.clearDirectories {
                mirror.whiteouts[dirIno] = nil
                mirror.opaque.remove(dirIno)
                mirror.redirects[dirIno] = nil
            }
            for whiteout in change.dropWhiteouts {
                mirror.whiteouts[whiteout.dirIno]?.remove(whiteout.name)
                if mirror.whiteouts[whiteout.dirIno]?.isEmpty == true { mirror.whiteouts[whiteout.dirIno] = nil }
            }
            for whiteout in change.addWhiteouts {
                if mirror.whiteouts[whiteout.dirIno, default: []].insert(whiteout.name).inserted { added += 1 }
            }
            for dirIno in change.addOpaque { mirror.opaque.insert(dirIno) }
            for redirect in change.setRedirects { mirror.redirects[redirect.dirIno] = redirect.path }
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
        try self.identities.commits.waitDurable(seq, insideChange: true)
    }

    /// Queues file system objects changed by the running change for the next group commit's sync.
    func changed(_ targets: SyncTarget...) {
        self.identities.commits.enqueue([], syncs: targets)
    }

    func clearDirectoryRecords(_ inodes: [UInt64]) throws(UnionError) {
        guard self.upper != nil, !inodes.isEmpty else { return }
        let known = self.upperRecords.withLock { records in
            inodes.filter {
                records.whiteouts[$0] != nil || records.opaque.contains($0) || records.redirects[$0] != nil
            }
        }
        var change = RecordChange()
        change.clearDirectories = known
        try self.commit(change, "clear records of removed directories")
    }
}
