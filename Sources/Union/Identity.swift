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

    init(_ record: IdentityRecord) {
        self.lowerLinkCount = UInt32(clamping: record.lowerLinkCount)
        self.lowerNamesGone = UInt32(clamping: record.lowerNamesGone)
        self.fileid = record.fileid ?? 0
        self.parent = record.parent
        self.name = [UInt8](record.name)
        self.originLayer = Int(record.originLayer)
        self.originIno = record.originIno
        self.upperIno = record.upperIno
        self.isIndexed = record.isIndexed
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

/// fileids: allocated on first sight (below a durable reservation: never reused, so a removed object's handle is
/// stale forever), or derived (`DerivedFileids`), persisted in the sidecar before any handle that needs its row is
/// returned. The whole table is mirrored in memory, keyed there by origin (layer index + inode) and by upper inode,
/// one row per key (the sidecar has no index on them: migration v7).
final class IdentityStore: Sendable {
    let sidecar: Sidecar
    /// The identities of lower objects shared by every client of the same lowers (`SharedIdentities`): a lower object
    /// this namespace never changed has no row here, its fileid is the shared one moved into `shared.range`. nil for
    /// a namespace without one (and for the shared store itself).
    let shared: SharedIdentities?
    /// This namespace's root fileid, stands for the shared store's root (set by `attachRoot` once allocated).
    let clientRoot = Atomic<UInt64>(0)

    struct Tables: Sendable {
        var byFileid: [UInt64: Identity] = [:]
        var byUpper: [UInt64: UInt64] = [:]
        var byOrigin: [OriginKey: UInt64] = [:]
        /// Other names of hard-linked objects.
        var otherNames: [UInt64: Set<LinkName>] = [:]

        mutating func insert(_ identity: Identity) {
            self.byFileid[identity.fileid] = identity
            if let upperIno = identity.upperIno { self.byUpper[upperIno] = identity.fileid }
            self.byOrigin[OriginKey(layer: identity.originLayer, ino: identity.originIno)] = identity.fileid
        }

        /// Inserts the rows of a store being opened; returns those a row with a higher fileid superseded, left out.
        /// One object per key: no unique index keeps it since migration v7, the store does (`insert`, `setUpper`,
        /// `fileids`). A row that claims an upper inode or an origin a row with a higher fileid also claims lost it
        /// (its handles go stale): the higher fileid is the newer object (allocated fileids grow, derived ones are
        /// above them).
        mutating func load(_ rows: [IdentityRecord]) -> Set<UInt64> {
            var superseded: Set<UInt64> = []
            let inOrder = zip(rows, rows.dropFirst()).allSatisfy { ($0.fileid ?? 0) < ($1.fileid ?? 0) }
            for row in inOrder ? rows : rows.sorted(by: { ($0.fileid ?? 0) < ($1.fileid ?? 0) }) {
                let identity = Identity(row)
                let origin = OriginKey(layer: identity.originLayer, ino: identity.originIno)
                for earlier in [identity.upperIno.flatMap { self.byUpper[$0] }, self.byOrigin[origin]] {
                    guard let earlier else { continue }
                    superseded.insert(earlier)
                    self.remove(earlier)
                }
                self.insert(identity)
            }
            return superseded
        }

        mutating func remove(_ fileid: UInt64) {
            self.otherNames[fileid] = nil
            guard let identity = self.byFileid.removeValue(forKey: fileid) else { return }
            if let upperIno = identity.upperIno, self.byUpper[upperIno] == fileid { self.byUpper[upperIno] = nil }
            let origin = OriginKey(layer: identity.originLayer, ino: identity.originIno)
            if self.byOrigin[origin] == fileid { self.byOrigin[origin] = nil }
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
    /// Lower objects take derived fileids (`DerivedFileids`), whose rows need not be durable before a reply: true until
    /// the store's stack of lowers changes (`checkStack`), then false for good (`meta.derivedFileidsEnded`).
    let derivesFileids: Atomic<Bool>
    /// Derived fileids a search found no object for (`rediscover`): a stale handle costs one search per run.
    let unfound = Locked<Set<UInt64>>([])
    /// A background flush of rows nobody waits for is under way (`flushSoon`).
    let flushing = Atomic<Bool>(false)
    /// fileids are handed out from memory, below a durable reservation (`meta.fileidReserved`): a fileid seen by a
    /// client before its record is durable is still never given to another object after a crash.
    private let allocator: Locked<(next: UInt64, reservedThrough: UInt64)>
    /// EXCLUSIVE create verifiers set since open (the sidecar may not have them yet).
    private let recentVerifiers = Locked<[UInt64: UInt64]>([:])
    static let reservationChunk: UInt64 = 4096

    var commits: GroupCommit<SidecarRecord> { self.sidecar.commits }

    /// Loads the store. An open writes nothing when the store has its keys and sound names (the fileid reservation is
    /// raised by the first allocation, not at open).
    /// - Parameters:
    ///   - fresh: the sidecar was just made by `createUpper`, with its reservation and root row: nothing was handed out
    ///     above its rows, so allocation goes on below the recorded reservation instead of above it.
    ///   - shared: the lower identities shared by the clients of these lowers; used only if this store has no row of
    ///     its range made against another shared store (`adoptShared`).
    init(
        sidecar: Sidecar, fresh: Bool = false, shared: SharedIdentities? = nil, logger: Logger? = nil
    )
        throws(UnionError)
    {
        self.sidecar = sidecar
        let load = { (db: Database) throws -> Loaded in try Self.load(db, repair: false) }
        var loaded = try sidecar.read("load identities", load)
        if loaded.needsWrite {
            loaded = try sidecar.write("repair identities") { db in try Self.load(db, repair: true) }
        }
        var inMemory = Tables()
        let superseded = inMemory.load(loaded.all)
        if !superseded.isEmpty {
            loaded.names.removeAll { superseded.contains($0.fileid) }
            // Left out in memory whatever happens; a store opened read-only keeps the rows on disk.
            var outcome = "the older rows were deleted"
            do throws(UnionError) {
                try sidecar.write("delete superseded identities") { db in
                    for fileid in superseded { try Self.deleteIdentity(db, fileid, otherNames: true) }
                }
            } catch {
                outcome = "the older rows are ignored (deleting them failed: \(error))"
            }
            logger?.warning(
                "identity rows claimed an upper inode or lower origin that a newer row claims too; \(outcome); their file handles are stale now",
                metadata: ["sidecar": "\(sidecar.path)", "fileids": "\(superseded.sorted().prefix(16))"])
        }
        for linkName in loaded.names {
            inMemory.otherNames[linkName.fileid, default: []].insert(
                LinkName(parent: linkName.parent, name: [UInt8](linkName.name)))
        }
        self.tables = Locked(inMemory)
        self.namespaceID = loaded.namespaceID
        self.derivesFileids = Atomic(!loaded.derivedFileidsEnded)
        // Allocated fileids only: derived ones and rows of shared fileids (objects this namespace changed) are above.
        let maxOwn =
            loaded.all.lazy.compactMap(\.fileid)
            .filter { $0 < DerivedFileids.base }.max() ?? 0
        let reserved = loaded.reserved
        if fresh {
            self.allocator = Locked((maxOwn + 1, reserved))
        } else {
            // Every fileid handed out is at most the reservation (migration v6 carried AUTOINCREMENT's highest into
            // it), or a row's.
            let next = max(maxOwn, reserved) + 1
            self.allocator = Locked((next, next - 1))
        }
        let recorded = try Self.adoptShared(shared, sidecar: sidecar, logger: logger)
        self.shared = recorded?.store
        self.handleKey = recorded.map { loaded.handleKey.sharing($0.key, for: $0.range) } ?? loaded.handleKey
    }

    private struct Loaded {
        var all: [IdentityRecord]
        var names: [LinkNameRecord]
        var namespaceID: UInt64
        var handleKey: HandleKey
        var reserved: UInt64
        var derivedFileidsEnded: Bool
        var needsWrite: Bool
    }

    private static func load(_ db: Database, repair: Bool) throws -> Loaded {
        // Names are walked by handle resolution: a record whose name could leave a directory (never written by
        // Strata) is deleted, so its object gets a new fileid when seen (its handles go stale).
        var all = try IdentityRecord.fetchEvery(db)
        var names = try LinkNameRecord.fetchEvery(db)
        var needsWrite = false
        let bad = all.filter { $0.parent != 0 && !LayerRecords.isValidName([UInt8]($0.name)) }.compactMap {
            $0.fileid?.sqliteValue
        }
        if !bad.isEmpty || names.contains(where: { !LayerRecords.isValidName([UInt8]($0.name)) }) {
            needsWrite = true
            if repair {
                try IdentityRecord.deleteAll(db, keys: bad)
                try LinkNameRecord.filter(bad.contains(Column("fileid"))).deleteAll(db)
                for linkName in names where !LayerRecords.isValidName([UInt8](linkName.name)) {
                    try linkName.delete(db)
                }
                all = try IdentityRecord.fetchEvery(db)
                names = try LinkNameRecord.fetchEvery(db)
            }
        }
        // The meta rows in one statement: an open reads several, and each statement of its own cost a first MNT
        // about 0.1 ms.
        var meta: [String: UInt64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT key, value FROM meta") {
            meta[row[0]] = UInt64(bitPattern: row[1])
        }
        let reserved = meta["fileidReserved"] ?? 0
        let derivedEnded = meta["derivedFileidsEnded"] != nil
        var nsid: UInt64 = 0
        if let value = meta["namespaceID"] {
            nsid = value
        } else if repair {
            nsid = UInt64.random(in: 1...UInt64(Int64.max))
            try MetaRecord(key: "namespaceID", value: nsid).insert(db)
        } else {
            needsWrite = true
        }
        // The secret of the handles' tags, drawn once and kept: handles stay valid across restarts.
        var key = HandleKey(k0: 0, k1: 0)
        if let k0 = meta["handleKey0"], let k1 = meta["handleKey1"] {
            key = HandleKey(k0: k0, k1: k1)
        } else if repair {
            key = HandleKey.random()
            try MetaRecord(key: "handleKey0", value: key.k0).save(db)
            try MetaRecord(key: "handleKey1", value: key.k1).save(db)
        } else {
            needsWrite = true
        }
        return Loaded(
            all: all, names: names, namespaceID: nsid, handleKey: key, reserved: reserved,
            derivedFileidsEnded: derivedEnded, needsWrite: needsWrite)
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
        self.allocator.withLock { allocator in
            let fileid = allocator.next
            allocator.next += 1
            if fileid > allocator.reservedThrough {
                allocator.reservedThrough = fileid + Self.reservationChunk - 1
                let through = allocator.reservedThrough
                records.append { db in try MetaRecord(key: "fileidReserved", value: through).save(db) }
                mustWait = true
            }
            return fileid
        }
    }

    /// Origins are keyed by layer index: with another stack of lowers (added, removed, reordered) they would name
    /// other objects. When the stack's signature changed, lower-origin identities are dropped (their handles go
    /// stale) and copied-up objects are re-keyed by their upper inode alone.
    /// `lowerPaths` (real paths, top-most first) are recorded for `LayerTools.promote`.
    func checkStack(signature: UInt64, lowerPaths: [String] = [], logger: Logger) throws(UnionError) {
        try self.tables.withLock { (tables) throws(UnionError) in
            let changed = try self.sidecar.write("check layer stack") { db -> Bool in
                let recorded = try Row.fetchAll(db, sql: "SELECT path FROM lowerLayer ORDER BY position").map {
                    (row: Row) -> Data in row["path"]
                }
                if recorded != lowerPaths.map({ Data($0.utf8) }) {
                    try db.execute(sql: "DELETE FROM lowerLayer")
                    for (position, path) in lowerPaths.enumerated() {
                        try db.execute(
                            sql: "INSERT INTO lowerLayer (position, path) VALUES (?, ?)",
                            arguments: [position + 1, Data(path.utf8)])
                    }
                }
                let old = try MetaRecord.fetchOne(db, named: "lowerStack")
                try MetaRecord(key: "lowerStack", value: signature).save(db)
                guard let old, old.value != signature else { return false }
                // The same layer index and inode may be another object now: derived fileids would name it.
                try MetaRecord(key: "derivedFileidsEnded", value: 1).save(db)
                try db.execute(
                    sql: "DELETE FROM linkName WHERE fileid IN (SELECT fileid FROM identity WHERE upperIno IS NULL)")
                try db.execute(sql: "DELETE FROM identity WHERE upperIno IS NULL")
                try db.execute(
                    sql: "UPDATE identity SET originLayer = 0, originIno = upperIno, isIndexed = 0, lowerNamesGone = 0")
                return true
            }
            guard changed else { return }
            self.derivesFileids.store(false, ordering: .relaxed)
            logger.warning(
                "the lower layers changed since this identity store was written: lower objects get new fileids")
            let all = try self.sidecar.read("reload identities") { db in try IdentityRecord.fetchAll(db) }
            let names = tables.otherNames
            tables = Tables()
            for row in all { tables.insert(Identity(row)) }
            tables.otherNames = names.filter { tables.byFileid[$0.key] != nil }
        }
    }

    /// Whether an identity row names upper inode `upperIno`.
    func hasUpperRow(_ upperIno: UInt64) -> Bool {
        self.tables.withLock { $0.byUpper[upperIno] != nil }
    }

    /// The upper inodes of `inodes` that no identity row names.
    func upperInodesWithoutRows(_ inodes: [UInt64]) -> Set<UInt64> {
        guard !inodes.isEmpty else { return [] }
        return self.tables.withLock { tables in Set(inodes.filter { tables.byUpper[$0] == nil }) }
    }

    func identity(_ fileid: UInt64) -> Identity? {
        if let identity = self.tables.withLock({ $0.byFileid[fileid] }) { return identity }
        return self.sharedIdentity(fileid)
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

    static func existing(_ tables: Tables, _ key: Key) -> UInt64? {
        key.isUpper ? tables.byUpper[key.ino] : tables.byOrigin[OriginKey(layer: key.layer, ino: key.ino)]
    }

    /// The fileid of the object, allocated (and committed) on first sight.
    func fileid(_ sighting: Sighting) throws(UnionError) -> UInt64 {
        if !sighting.mayHaveOtherNames {
            if let fileid = self.tables.withLock({ Self.existing($0, sighting.key) }) { return fileid }
            if let shared = self.shared, let asShared = self.sharedSighting(sighting, shared),
                let fileid = shared.store.tables.withLock({ Self.existing($0, asShared.key) }),
                fileid < SharedIdentities.span
            {
                return shared.base + fileid
            }
        }
        return try self.fileids([sighting])[0]
    }

    private static func isNewName(_ tables: Tables, _ fileid: UInt64, _ sighting: Sighting) -> Bool {
        guard sighting.mayHaveOtherNames, let identity = tables.byFileid[fileid] else { return false }
        if identity.parent == sighting.parent && identity.name == sighting.name { return false }
        return !(tables.otherNames[fileid]?.contains(LinkName(parent: sighting.parent, name: sighting.name)) ?? false)
    }

    /// Whether `fileids` of `sightings` would wait for a flush: a fileid allocated (not derived), or a new name of a
    /// hard-linked object.
    private func wouldWait(_ tables: Tables, _ sightings: [Sighting], _ fromShared: [UInt64?]?) -> Bool {
        for (index, sighting) in sightings.enumerated() {
            if let fileid = Self.existing(tables, sighting.key) ?? fromShared?[index] {
                if Self.isNewName(tables, fileid, sighting) { return true }
            } else if self.derivedFileid(tables, sighting.key) == nil {
                return true
            }
        }
        return false
    }

    /// fileids of many objects (one listing): new ones allocated from memory, their records queued as one change.
    func fileids(_ sightings: [Sighting]) throws(UnionError) -> [UInt64] {
        let fromShared = try self.sharedFileids(sightings)
        var mustWait = false
        // Rows of derived fileids alone need no flush before the reply (`DerivedFileids`); anything else does.
        var onlyDerived = true
        let (result, seq) = try self.tables.withLock { (tables) throws(UnionError) -> ([UInt64], UInt64) in
            // A caller that must not wait learns it would before anything is allocated (`NoWaiting`).
            if NoWaiting.isActive, self.wouldWait(tables, sightings, fromShared) { throw NoWaiting.refuse() }
            var result = [UInt64](repeating: 0, count: sightings.count)
            var records: [SidecarRecord] = []
            for (index, sighting) in sightings.enumerated() {
                var known = Self.existing(tables, sighting.key)
                if known == nil, let fileid = fromShared?[index] {
                    result[index] = fileid
                    guard sighting.mayHaveOtherNames else { continue }
                    // A hard-linked file keeps the shared fileid a listing (which cannot tell it is hard-linked) gives
                    // it, but its names are this namespace's bookkeeping: its row becomes our own. Losing that row in
                    // a crash loses nothing: the fileid resolves through the shared store as before.
                    records += self.ownRow(&tables, fileid)
                    known = fileid
                }
                if let fileid = known {
                    result[index] = fileid
                    if Self.isNewName(tables, fileid, sighting) {
                        let name = LinkName(parent: sighting.parent, name: sighting.name)
                        tables.otherNames[fileid, default: []].insert(name)
                        onlyDerived = false
                        records.append { db in
                            try LinkNameRecord(fileid: fileid, parent: name.parent, name: Data(name.name)).save(db)
                        }
                    }
                    continue
                }
                let origin = OriginKey(layer: sighting.key.layer, ino: sighting.key.ino)
                var stale: UInt64?
                if sighting.key.isUpper, let old = tables.byOrigin[origin] {
                    // An upper inode reused after its object went away without its record.
                    stale = old
                    tables.remove(old)
                }
                let fileid: UInt64
                if let derived = self.derivedFileid(tables, sighting.key) {
                    fileid = derived
                } else {
                    fileid = self.allocateFileid(&records, &mustWait)
                    onlyDerived = false
                }
                let record = IdentityRecord(
                    fileid: fileid, parent: sighting.parent, name: Data(sighting.name),
                    originLayer: Int64(sighting.key.layer), originIno: sighting.key.ino,
                    upperIno: sighting.key.isUpper ? sighting.key.ino : nil, isIndexed: false, lowerLinkCount: 1)
                tables.insert(Identity(record))
                result[index] = fileid
                records.append { db in
                    if let stale {
                        try IdentityRecord.deleteOne(db, key: stale.sqliteValue)
                        try db.execute(
                            sql: "DELETE FROM linkName WHERE fileid = ?", arguments: [stale.sqliteValue])
                    }
                    try Self.insert(record, db)
                }
            }
            return (result, records.isEmpty ? 0 : self.queue(records))
        }
        if mustWait {
            try self.commits.waitDurable(seq, insideChange: self.insideChange.load(ordering: .relaxed))
        } else if onlyDerived {
            if seq != 0 && !self.insideChange.load(ordering: .relaxed) { self.flushSoon() }
        } else {
            try self.durableUnlessInsideChange(seq)
        }
        return result
    }

    /// Inserts a new identity with one cached statement: the record's Codable insert cost a third of a first listing
    /// (encoding through a keyed container, the column-name lookups, the row fetched back).
    static func insert(_ record: IdentityRecord, _ db: Database) throws {
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO identity (fileid, parent, name, originLayer, originIno, upperIno, isIndexed, lowerLinkCount, \
                lowerNamesGone) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        try statement.execute(arguments: [
            record.fileid, record.parent, record.name, record.originLayer, record.originIno, record.upperIno,
            record.isIndexed, record.lowerLinkCount,
            record.lowerNamesGone,
        ])
    }

    /// Records that `fileid` now lives in the upper layer as inode `upperIno` (copy-up, before the rename that
    /// publishes it: a crash before the rename leaves the record pointing at a `work/` leftover, which open clears).
    /// Queued; the caller waits for the returned change before the rename.
    @discardableResult
    func setUpper(_ fileid: UInt64, upperIno: UInt64, isIndexed: Bool, lowerLinkCount: UInt32 = 1) -> UInt64 {
        self.tables.withLock { (tables) -> UInt64 in
            let own = self.ownRow(&tables, fileid)
            let other = tables.byUpper[upperIno].flatMap { $0 != fileid ? $0 : nil }
            if let other { tables.remove(other) }
            if var identity = tables.byFileid[fileid] {
                tables.remove(fileid)
                identity.upperIno = upperIno
                identity.isIndexed = identity.isIndexed || isIndexed
                identity.lowerLinkCount = lowerLinkCount
                tables.insert(identity)
            }
            return self.queue(
                own + [
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
        self.tables.withLock { tables in
            let own = self.ownRow(&tables, fileid)
            guard tables.byFileid[fileid] != nil else { return }
            Self.applyLowerNamesGone(&tables, [fileid])
            self.queue(own + [{ db in try Self.recordLowerNamesGone(db, [fileid]) }])
        }
    }

    /// The sidecar half of `lowerNameGone`, for a caller that commits it with other records in one transaction (a
    /// whiteout); it then calls `lowerNamesGoneCommitted`.
    static func recordLowerNamesGone(_ db: Database, _ fileids: [UInt64]) throws {
        for fileid in fileids {
            try db.execute(
                sql: "UPDATE identity SET lowerNamesGone = lowerNamesGone + 1 WHERE fileid = ?",
                arguments: [fileid.sqliteValue])
        }
    }

    func lowerNamesGoneCommitted(_ fileids: [UInt64]) {
        guard !fileids.isEmpty else { return }
        self.tables.withLock { Self.applyLowerNamesGone(&$0, fileids) }
    }

    private static func applyLowerNamesGone(_ tables: inout Tables, _ fileids: [UInt64]) {
        for fileid in fileids { tables.byFileid[fileid]?.lowerNamesGone &+= 1 }
    }

    /// Records a rename: the new name becomes the recorded one; the old one is no longer a name of the object.
    func moved(_ fileid: UInt64, from: LinkName, to: LinkName) {
        self.tables.withLock { tables in
            let own = self.ownRow(&tables, fileid)
            guard let identity = tables.byFileid[fileid] else { return }
            let primary = LinkName(parent: identity.parent, name: identity.name)
            tables.byFileid[fileid]?.parent = to.parent
            tables.byFileid[fileid]?.name = to.name
            tables.otherNames[fileid]?.remove(from)
            tables.otherNames[fileid]?.remove(to)
            if primary != from { tables.otherNames[fileid, default: []].insert(primary) }
            self.queue(
                own + [
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

    private static func deleteName(_ db: Database, _ fileid: UInt64, _ linkName: LinkName) throws {
        try db.execute(
            sql: "DELETE FROM linkName WHERE fileid = ? AND parent = ? AND name = ?",
            arguments: [fileid.sqliteValue, linkName.parent.sqliteValue, Data(linkName.name)])
    }

    /// Records another name of a (hard-linked) object. Queued; returns the change for a caller that needs it durable
    /// before a step.
    @discardableResult
    func addName(_ fileid: UInt64, _ linkName: LinkName) -> UInt64 {
        self.tables.withLock { (tables) -> UInt64 in
            let own = self.ownRow(&tables, fileid)
            tables.otherNames[fileid, default: []].insert(linkName)
            return self.queue(
                own + [
                    { db in
                        try LinkNameRecord(
                            fileid: fileid, parent: linkName.parent, name: Data(linkName.name)
                        ).save(db)
                    }
                ])
        }
    }

    /// One name of an object that lives on under other names went away: if it was the recorded one, another known
    /// name takes its place, so the object's handle keeps resolving.
    func removedName(_ fileid: UInt64, _ linkName: LinkName) {
        self.tables.withLock { tables in
            let own = self.ownRow(&tables, fileid)
            guard let identity = tables.byFileid[fileid] else { return }
            let isPrimary = identity.parent == linkName.parent && identity.name == linkName.name
            let replacement = isPrimary ? tables.otherNames[fileid]?.first(where: { $0 != linkName }) : nil
            tables.otherNames[fileid]?.remove(linkName)
            if let other = replacement {
                tables.byFileid[fileid]?.parent = other.parent
                tables.byFileid[fileid]?.name = other.name
                tables.otherNames[fileid]?.remove(other)
            }
            self.queue(
                own + [
                    { db in
                        try Self.deleteName(db, fileid, linkName)
                        if let other = replacement {
                            try db.execute(
                                sql: "UPDATE identity SET parent = ?, name = ? WHERE fileid = ?",
                                arguments: [other.parent.sqliteValue, Data(other.name), fileid.sqliteValue])
                            try Self.deleteName(db, fileid, other)
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
        if self.derivedOrigin(fileid) != nil { self.markUnfound(fileid) }
        self.tables.withLock { tables in
            // `otherNames` mirrors the whole linkName table: an object without other names has no row there.
            let hadOtherNames = !(tables.otherNames[fileid]?.isEmpty ?? true)
            tables.remove(fileid)
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
        self.tables.withLock { tables in
            let affected = inodes.compactMap { tables.byUpper[$0] }
            guard !affected.isEmpty else { return }
            for fileid in affected {
                guard var identity = tables.byFileid[fileid] else { continue }
                tables.remove(fileid)
                identity.upperIno = nil
                tables.insert(identity)
            }
            self.queue([
                { db in
                    for fileid in affected {
                        try db.execute(
                            sql: "UPDATE identity SET upperIno = NULL WHERE fileid = ?",
                            arguments: [fileid.sqliteValue])
                    }
                }
            ])
        }
    }

    func verifier(_ fileid: UInt64) throws(UnionError) -> UInt64? {
        if let verifier = self.recentVerifiers.withLock({ $0[fileid] }) { return verifier }
        return try self.sidecar.read("read verifier") { db in
            try VerifierRecord.fetchOne(db, key: fileid.sqliteValue)?.verifier
        }
    }

    func setVerifier(_ fileid: UInt64, _ verifier: UInt64) {
        self.recentVerifiers.withLock { $0[fileid] = verifier }
        self.queue([
            { db in try VerifierRecord(fileid: fileid, verifier: verifier).save(db) }
        ])
    }
}
