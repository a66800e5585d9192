import Basics
import Foundation
import GRDB
import Logging
import Synchronization

/// One identity: see `IdentityRecord`.
struct Identity: Sendable {
    var fileid: UInt64
    var parent: UInt64
    var name: [UInt8]
    var originLayer: Int
    var originIno: UInt64
    var upperIno: UInt64?
    var isIndexed: Bool
    var lowerLinkCount: UInt32
    var lowerNamesGone: UInt32

    init(_ r: IdentityRecord) {
        self.lowerLinkCount = UInt32(clamping: r.lowerLinkCount)
        self.lowerNamesGone = UInt32(clamping: r.lowerNamesGone)
        self.fileid = r.fileid ?? 0
        self.parent = r.parent
        self.name = [UInt8](r.name)
        self.originLayer = Int(r.originLayer)
        self.originIno = r.originIno
        self.upperIno = r.upperIno
        self.isIndexed = r.isIndexed
    }
}

/// A name of an object: its parent directory's fileid and the name in it.
struct LinkName: Hashable, Sendable {
    var parent: UInt64
    var name: [UInt8]
}

struct OriginKey: Hashable, Sendable {
    var layer: Int
    var ino: UInt64
}

/// fileids: allocated on first sight (SQLite AUTOINCREMENT: never reused, so a removed object's handle is stale
/// forever), keyed by origin (layer index + inode) and by upper inode, persisted in the sidecar before any handle
/// that names them is returned. The whole table is mirrored in memory.
final class IdentityStore: Sendable {
    let sidecar: Sidecar

    struct Tables: Sendable {
        var byFileid: [UInt64: Identity] = [:]
        var byUpper: [UInt64: UInt64] = [:]
        var byOrigin: [OriginKey: UInt64] = [:]
        /// Other names of hard-linked objects.
        var otherNames: [UInt64: Set<LinkName>] = [:]

        mutating func insert(_ i: Identity) {
            self.byFileid[i.fileid] = i
            if let u = i.upperIno { self.byUpper[u] = i.fileid }
            self.byOrigin[OriginKey(layer: i.originLayer, ino: i.originIno)] = i.fileid
        }

        mutating func remove(_ fileid: UInt64) {
            self.otherNames[fileid] = nil
            guard let i = self.byFileid.removeValue(forKey: fileid) else { return }
            if let u = i.upperIno, self.byUpper[u] == fileid { self.byUpper[u] = nil }
            let k = OriginKey(layer: i.originLayer, ino: i.originIno)
            if self.byOrigin[k] == fileid { self.byOrigin[k] = nil }
        }
    }

    let tables: Locked<Tables>
    let namespaceID: UInt64
    /// Authenticates the object handles of this namespace (see `HandleKey`).
    let handleKey: HandleKey
    /// True while a namespace change runs (set by `mutate`, under the write lock): records are only queued, and the
    /// change waits for them once, after it releases the lock. Outside a change (a LOOKUP's first sighting) a new
    /// fileid is durable before it is returned.
    let insideChange = Atomic<Bool>(false)
    /// fileids are handed out from memory, below a durable reservation (`meta.fileidReserved`): a fileid seen by a
    /// client before its record is durable is still never given to another object after a crash.
    private let allocator: Locked<(next: UInt64, reservedThrough: UInt64)>
    /// EXCLUSIVE create verifiers set since open (the sidecar may not have them yet).
    private let recentVerifiers = Locked<[UInt64: UInt64]>([:])
    static let reservationChunk: UInt64 = 4096

    var commits: GroupCommit<SidecarRecord> { self.sidecar.commits }

    init(sidecar: Sidecar) throws(UnionError) {
        self.sidecar = sidecar
        let (all, names, nsid, next, key) = try sidecar.write("load identities") {
            db -> ([IdentityRecord], [LinkNameRecord], UInt64, UInt64, HandleKey) in
            // Names are walked by handle resolution: a record whose name could leave a directory (never written by
            // Strata) is deleted, so its object gets a new fileid when seen (its handles go stale).
            var all = try IdentityRecord.fetchAll(db)
            var names = try LinkNameRecord.fetchAll(db)
            let bad = all.filter { $0.parent != 0 && !LayerRecords.isValidName([UInt8]($0.name)) }.compactMap {
                $0.fileid?.sqliteValue
            }
            if !bad.isEmpty || names.contains(where: { !LayerRecords.isValidName([UInt8]($0.name)) }) {
                try IdentityRecord.deleteAll(db, keys: bad)
                try LinkNameRecord.filter(bad.contains(Column("fileid"))).deleteAll(db)
                for n in names where !LayerRecords.isValidName([UInt8](n.name)) { try n.delete(db) }
                all = try IdentityRecord.fetchAll(db)
                names = try LinkNameRecord.fetchAll(db)
            }
            let seq = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'identity'") ?? 0
            let maxID = try Int64.fetchOne(db, sql: "SELECT MAX(fileid) FROM identity") ?? 0
            let reserved = try MetaRecord.fetchOne(db, key: "fileidReserved")?.value ?? 0
            let next = max(UInt64(max(seq, maxID, 0)), reserved) + 1
            try MetaRecord(key: "fileidReserved", value: next + Self.reservationChunk - 1).save(db)
            let nsid: UInt64
            if let m = try MetaRecord.fetchOne(db, key: "namespaceID") {
                nsid = m.value
            } else {
                nsid = UInt64.random(in: 1...UInt64(Int64.max))
                try MetaRecord(key: "namespaceID", value: nsid).insert(db)
            }
            // The secret of the handles' tags, drawn once and kept: handles stay valid across restarts.
            let key: HandleKey
            if let k0 = try MetaRecord.fetchOne(db, key: "handleKey0"),
                let k1 = try MetaRecord.fetchOne(db, key: "handleKey1")
            {
                key = HandleKey(k0: k0.value, k1: k1.value)
            } else {
                key = HandleKey.random()
                try MetaRecord(key: "handleKey0", value: key.k0).save(db)
                try MetaRecord(key: "handleKey1", value: key.k1).save(db)
            }
            return (all, names, nsid, next, key)
        }
        var t = Tables()
        for r in all { t.insert(Identity(r)) }
        for n in names {
            t.otherNames[n.fileid, default: []].insert(LinkName(parent: n.parent, name: [UInt8](n.name)))
        }
        self.tables = Locked(t)
        self.namespaceID = nsid
        self.handleKey = key
        self.allocator = Locked((next, next + Self.reservationChunk - 1))
    }

    /// Queues one change's records (call under `tables`' lock, so the queue order is the order of the table
    /// changes); returns its sequence number.
    @discardableResult
    private func queue(_ records: [SidecarRecord]) -> UInt64 {
        self.commits.enqueue(records)
    }

    /// Outside a change: waits until `seq` is durable. Inside one, `mutate` waits after releasing its lock.
    private func durableUnlessInsideChange(_ seq: UInt64) throws(UnionError) {
        if seq == 0 || self.insideChange.load(ordering: .relaxed) { return }
        try self.commits.waitDurable(seq)
    }

    /// A new fileid; `mustWait` is set when a new reservation was queued (it must be durable before the fileid is
    /// shown to anyone, even inside a change).
    private func allocateFileid(_ records: inout [SidecarRecord], _ mustWait: inout Bool) -> UInt64 {
        self.allocator.withLock { a in
            let f = a.next
            a.next += 1
            if f > a.reservedThrough {
                a.reservedThrough = f + Self.reservationChunk - 1
                let through = a.reservedThrough
                records.append { db in try MetaRecord(key: "fileidReserved", value: through).save(db) }
                mustWait = true
            }
            return f
        }
    }

    /// Origins are keyed by layer index: with another stack of lowers (added, removed, reordered) they would name
    /// other objects. When the stack's signature changed, lower-origin identities are dropped (their handles go
    /// stale) and copied-up objects are re-keyed by their upper inode alone.
    /// `lowerPaths` (real paths, top-most first) are recorded for `LayerTools.promote`.
    func checkStack(signature: UInt64, lowerPaths: [String] = [], logger: Logger) throws(UnionError) {
        try self.tables.withLock { (t) throws(UnionError) in
            let changed = try self.sidecar.write("check layer stack") { db -> Bool in
                let recorded = try Row.fetchAll(db, sql: "SELECT path FROM lowerLayer ORDER BY position").map {
                    (r: Row) -> Data in r["path"]
                }
                if recorded != lowerPaths.map({ Data($0.utf8) }) {
                    try db.execute(sql: "DELETE FROM lowerLayer")
                    for (i, p) in lowerPaths.enumerated() {
                        try db.execute(
                            sql: "INSERT INTO lowerLayer (position, path) VALUES (?, ?)",
                            arguments: [i + 1, Data(p.utf8)])
                    }
                }
                let old = try MetaRecord.fetchOne(db, key: "lowerStack")
                try MetaRecord(key: "lowerStack", value: signature).save(db)
                guard let old, old.value != signature else { return false }
                try db.execute(
                    sql: "DELETE FROM linkName WHERE fileid IN (SELECT fileid FROM identity WHERE upperIno IS NULL)")
                try db.execute(sql: "DELETE FROM identity WHERE upperIno IS NULL")
                try db.execute(
                    sql: "UPDATE identity SET originLayer = 0, originIno = upperIno, isIndexed = 0, lowerNamesGone = 0")
                return true
            }
            guard changed else { return }
            logger.warning(
                "the lower layers changed since this identity store was written: lower objects get new fileids")
            let all = try self.sidecar.read("reload identities") { db in try IdentityRecord.fetchAll(db) }
            let names = t.otherNames
            t = Tables()
            for r in all { t.insert(Identity(r)) }
            t.otherNames = names.filter { t.byFileid[$0.key] != nil }
        }
    }

    func identity(_ fileid: UInt64) -> Identity? {
        self.tables.withLock { $0.byFileid[fileid] }
    }

    /// What an object found at `loc` is keyed by.
    struct Key: Sendable {
        var layer: Int
        var ino: UInt64
        var isUpper: Bool
    }

    struct Sighting: Sendable {
        var key: Key
        var parent: UInt64
        var name: [UInt8]
        /// A non-directory with more than one link: a name other than the recorded one is remembered.
        var mayHaveOtherNames = false
    }

    private static func existing(_ t: Tables, _ k: Key) -> UInt64? {
        k.isUpper ? t.byUpper[k.ino] : t.byOrigin[OriginKey(layer: k.layer, ino: k.ino)]
    }

    /// The fileid of the object, allocated (and committed) on first sight.
    func fileid(_ s: Sighting) throws(UnionError) -> UInt64 {
        if !s.mayHaveOtherNames, let f = self.tables.withLock({ Self.existing($0, s.key) }) { return f }
        return try self.fileids([s])[0]
    }

    private static func isNewName(_ t: Tables, _ f: UInt64, _ s: Sighting) -> Bool {
        guard s.mayHaveOtherNames, let i = t.byFileid[f] else { return false }
        if i.parent == s.parent && i.name == s.name { return false }
        return !(t.otherNames[f]?.contains(LinkName(parent: s.parent, name: s.name)) ?? false)
    }

    /// fileids of many objects (one listing): new ones allocated from memory, their records queued as one change.
    func fileids(_ sightings: [Sighting]) throws(UnionError) -> [UInt64] {
        var mustWait = false
        let (result, seq) = self.tables.withLock { (t) -> ([UInt64], UInt64) in
            var result = [UInt64](repeating: 0, count: sightings.count)
            var records: [SidecarRecord] = []
            for (i, s) in sightings.enumerated() {
                if let f = Self.existing(t, s.key) {
                    result[i] = f
                    if Self.isNewName(t, f, s) {
                        let n = LinkName(parent: s.parent, name: s.name)
                        t.otherNames[f, default: []].insert(n)
                        records.append { db in
                            try LinkNameRecord(
                                fileid: f, parent: n.parent, name: Data(n.name)
                            ).save(db)
                        }
                    }
                    continue
                }
                let ok = OriginKey(layer: s.key.layer, ino: s.key.ino)
                var stale: UInt64?
                if s.key.isUpper, let old = t.byOrigin[ok] {
                    // An upper inode reused after its object went away without its record.
                    stale = old
                    t.remove(old)
                }
                let f = self.allocateFileid(&records, &mustWait)
                let r = IdentityRecord(
                    fileid: f, parent: s.parent, name: Data(s.name), originLayer: Int64(s.key.layer),
                    originIno: s.key.ino, upperIno: s.key.isUpper ? s.key.ino : nil, isIndexed: false,
                    lowerLinkCount: 1)
                t.insert(Identity(r))
                result[i] = f
                records.append { db in
                    if let stale {
                        try IdentityRecord.deleteOne(db, key: stale.sqliteValue)
                        try db.execute(
                            sql: "DELETE FROM linkName WHERE fileid = ?", arguments: [stale.sqliteValue])
                    }
                    try Self.insert(r, db)
                }
            }
            return (result, records.isEmpty ? 0 : self.queue(records))
        }
        if mustWait {
            try self.commits.waitDurable(seq)
        } else {
            try self.durableUnlessInsideChange(seq)
        }
        return result
    }

    /// Inserts a new identity with one cached statement: the record's Codable insert cost a third of a first listing
    /// (encoding through a keyed container, the column-name lookups, the row fetched back).
    static func insert(_ r: IdentityRecord, _ db: Database) throws {
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO identity (fileid, parent, name, originLayer, originIno, upperIno, isIndexed, lowerLinkCount, \
                lowerNamesGone) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        try statement.execute(arguments: [
            r.fileid.sqliteValue, r.parent.sqliteValue, r.name, r.originLayer, r.originIno.sqliteValue,
            r.upperIno.sqliteValue, r.isIndexed, r.lowerLinkCount, r.lowerNamesGone,
        ])
    }

    /// Records that `fileid` now lives in the upper layer as inode `upperIno` (copy-up, before the rename that
    /// publishes it: a crash before the rename leaves the record pointing at a `work/` leftover, which open clears).
    /// Queued; the caller waits for the returned change before the rename.
    @discardableResult
    func setUpper(_ fileid: UInt64, upperIno: UInt64, isIndexed: Bool, lowerLinkCount: UInt32 = 1) -> UInt64 {
        self.tables.withLock { (t) -> UInt64 in
            let other = t.byUpper[upperIno].flatMap { $0 != fileid ? $0 : nil }
            if let other { t.remove(other) }
            if var i = t.byFileid[fileid] {
                t.remove(fileid)
                i.upperIno = upperIno
                i.isIndexed = i.isIndexed || isIndexed
                i.lowerLinkCount = lowerLinkCount
                t.insert(i)
            }
            return self.queue([
                { db in
                    if let other { try IdentityRecord.deleteOne(db, key: other.sqliteValue) }
                    try db.execute(
                        sql:
                            "UPDATE identity SET upperIno = ?, isIndexed = isIndexed OR ?, lowerLinkCount = ? WHERE fileid = ?",
                        arguments: [
                            upperIno.sqliteValue, isIndexed, Int64(lowerLinkCount), fileid.sqliteValue,
                        ])
                }
            ])
        }
    }

    /// Records that one lower name of `fileid` (a name showing its lower inode, or its `index/` copy) stopped showing
    /// it: linked or copied up (it counts as an upper link now), whited out, or replaced. Queued.
    func lowerNameGone(_ fileid: UInt64) {
        self.tables.withLock { t in
            guard t.byFileid[fileid] != nil else { return }
            Self.applyLowerNamesGone(&t, [fileid])
            self.queue([{ db in try Self.recordLowerNamesGone(db, [fileid]) }])
        }
    }

    /// The sidecar half of `lowerNameGone`, for a caller that commits it with other records in one transaction (a
    /// whiteout); it then calls `lowerNamesGoneCommitted`.
    static func recordLowerNamesGone(_ db: Database, _ fileids: [UInt64]) throws {
        for f in fileids {
            try db.execute(
                sql: "UPDATE identity SET lowerNamesGone = lowerNamesGone + 1 WHERE fileid = ?",
                arguments: [f.sqliteValue])
        }
    }

    func lowerNamesGoneCommitted(_ fileids: [UInt64]) {
        guard !fileids.isEmpty else { return }
        self.tables.withLock { Self.applyLowerNamesGone(&$0, fileids) }
    }

    private static func applyLowerNamesGone(_ t: inout Tables, _ fileids: [UInt64]) {
        for f in fileids { t.byFileid[f]?.lowerNamesGone &+= 1 }
    }

    /// Records a rename: the new name becomes the recorded one; the old one is no longer a name of the object.
    func moved(_ fileid: UInt64, from: LinkName, to: LinkName) {
        self.tables.withLock { t in
            guard let i = t.byFileid[fileid] else { return }
            let primary = LinkName(parent: i.parent, name: i.name)
            t.byFileid[fileid]?.parent = to.parent
            t.byFileid[fileid]?.name = to.name
            t.otherNames[fileid]?.remove(from)
            t.otherNames[fileid]?.remove(to)
            if primary != from { t.otherNames[fileid, default: []].insert(primary) }
            self.queue([
                { db in
                    try db.execute(
                        sql: "UPDATE identity SET parent = ?, name = ? WHERE fileid = ?",
                        arguments: [to.parent.sqliteValue, Data(to.name), fileid.sqliteValue])
                    try Self.deleteName(db, fileid, from)
                    try Self.deleteName(db, fileid, to)
                    if primary != from {
                        try LinkNameRecord(
                            fileid: fileid, parent: primary.parent, name: Data(primary.name)
                        ).save(db)
                    }
                }
            ])
        }
    }

    private static func deleteName(_ db: Database, _ fileid: UInt64, _ n: LinkName) throws {
        try db.execute(
            sql: "DELETE FROM linkName WHERE fileid = ? AND parent = ? AND name = ?",
            arguments: [fileid.sqliteValue, n.parent.sqliteValue, Data(n.name)])
    }

    /// Records another name of a (hard-linked) object. Queued; returns the change for a caller that needs it durable
    /// before a step.
    @discardableResult
    func addName(_ fileid: UInt64, _ n: LinkName) -> UInt64 {
        self.tables.withLock { (t) -> UInt64 in
            t.otherNames[fileid, default: []].insert(n)
            return self.queue([
                { db in
                    try LinkNameRecord(
                        fileid: fileid, parent: n.parent, name: Data(n.name)
                    ).save(db)
                }
            ])
        }
    }

    /// One name of an object that lives on under other names went away: if it was the recorded one, another known
    /// name takes its place, so the object's handle keeps resolving.
    func removedName(_ fileid: UInt64, _ n: LinkName) {
        self.tables.withLock { t in
            guard let i = t.byFileid[fileid] else { return }
            let isPrimary = i.parent == n.parent && i.name == n.name
            let replacement = isPrimary ? t.otherNames[fileid]?.first(where: { $0 != n }) : nil
            t.otherNames[fileid]?.remove(n)
            if let r = replacement {
                t.byFileid[fileid]?.parent = r.parent
                t.byFileid[fileid]?.name = r.name
                t.otherNames[fileid]?.remove(r)
            }
            self.queue([
                { db in
                    try Self.deleteName(db, fileid, n)
                    if let r = replacement {
                        try db.execute(
                            sql: "UPDATE identity SET parent = ?, name = ? WHERE fileid = ?",
                            arguments: [r.parent.sqliteValue, Data(r.name), fileid.sqliteValue])
                        try Self.deleteName(db, fileid, r)
                    }
                }
            ])
        }
    }

    func otherNames(_ fileid: UInt64) -> Set<LinkName> {
        self.tables.withLock { $0.otherNames[fileid] ?? [] }
    }

    /// Forgets a removed object: its handle becomes stale.
    func forget(_ fileid: UInt64) {
        self.recentVerifiers.withLock { $0[fileid] = nil }
        self.tables.withLock { t in
            // `otherNames` mirrors the whole linkName table: an object without other names has no row there.
            let hadOtherNames = !(t.otherNames[fileid]?.isEmpty ?? true)
            t.remove(fileid)
            self.queue([{ db in try Self.deleteIdentity(db, fileid, otherNames: hadOtherNames) }])
        }
    }

    /// The rows of a forgotten object, with cached statements: through the query interface (`deleteOne`), each delete
    /// resolved generic metadata by its mangled name and built its SQL anew, most of a REMOVE's sidecar cost.
    static func deleteIdentity(_ db: Database, _ fileid: UInt64, otherNames: Bool) throws {
        let key = fileid.sqliteValue
        try db.cachedStatement(sql: "DELETE FROM identity WHERE fileid = ?").execute(arguments: [key])
        try db.cachedStatement(sql: "DELETE FROM verifier WHERE fileid = ?").execute(arguments: [key])
        if otherNames {
            try db.cachedStatement(sql: "DELETE FROM linkName WHERE fileid = ?").execute(arguments: [key])
        }
    }

    /// Clears upper inodes that turned out to be `work/` leftovers of an interrupted copy-up. Queued.
    func clearUpper(inodes: [UInt64]) {
        guard !inodes.isEmpty else { return }
        self.tables.withLock { t in
            let affected = inodes.compactMap { t.byUpper[$0] }
            guard !affected.isEmpty else { return }
            for f in affected {
                guard var i = t.byFileid[f] else { continue }
                t.remove(f)
                i.upperIno = nil
                t.insert(i)
            }
            self.queue([
                { db in
                    for f in affected {
                        try db.execute(
                            sql: "UPDATE identity SET upperIno = NULL WHERE fileid = ?",
                            arguments: [f.sqliteValue])
                    }
                }
            ])
        }
    }

    func verifier(_ fileid: UInt64) throws(UnionError) -> UInt64? {
        if let v = self.recentVerifiers.withLock({ $0[fileid] }) { return v }
        return try self.sidecar.read("read verifier") { db in
            try VerifierRecord.fetchOne(db, key: fileid.sqliteValue)?.verifier
        }
    }

    func setVerifier(_ fileid: UInt64, _ v: UInt64) {
        self.recentVerifiers.withLock { $0[fileid] = v }
        self.queue([
            { db in try VerifierRecord(fileid: fileid, verifier: v).save(db) }
        ])
    }
}
