import Basics
import Foundation
import GRDB
import Logging
import Synchronization

/// The identities of the objects of one stack of lowers (an export's image version), shared by every client whose
/// upper is stacked on it and by the read-only namespace of those lowers: a client resolving a lower object another
/// client (or the read-only namespace) saw first writes nothing (Docs/FORMAT.md, "Shared lower identities").
///
/// A per-client namespace shows the shared fileid `f` as `base + f` (`range`), disjoint from the fileids it
/// allocates itself (below `span`) and from every other version's; its handles of them are tagged under its own key
/// combined with the store's (`HandleKey.sharing`), so they name objects of that client's namespace only. The store
/// stays open for the server's life (`close`), across the opens and closes of the namespaces that use it.
public final class SharedIdentities: Sendable {
    /// The numbers a per-client namespace allocates itself stay below this; shared fileids of version v are shown
    /// from `v × span` on.
    static let span: UInt64 = 1 << 40
    let store: IdentityStore
    let signature: UInt64
    let rootFileid: UInt64
    let base: UInt64
    var range: Range<UInt64> { self.base..<(self.base + Self.span) }

    /// Opens (or makes) `directory/identity.db` for `lowers` (top-most first), image version `version` (1 for an
    /// export without images).
    public init(directory: String, lowers: [String], version: Int, logger: Logger) throws(UnionError) {
        guard let top = lowers.first else { throw .invalid("a shared identity store needs at least one lower") }
        guard version >= 1, UInt64(version) < (1 << 23) else {
            throw .invalid("image version \(version) is out of the range of shared identity stores (1 to 2^23)")
        }
        try Files.mkdirAll(directory)
        self.store = try IdentityStore(sidecar: try Sidecar(path: directory + "/identity.db", readOnly: false))
        self.base = UInt64(version) * Self.span
        self.signature = UnionNamespace.stackSignature(lowers)
        let lowerPaths = lowers.map(UnionNamespace.realPath)
        if try !UnionNamespace.recordsStack(self.store.sidecar, signature: self.signature, lowerPaths: lowerPaths) {
            try self.store.checkStack(signature: self.signature, lowerPaths: lowerPaths, logger: logger)
        }
        // The root as the read-only namespace of these lowers identifies it (its layer 0 is the top-most lower).
        let layer = try Layer.openLower(index: 0, directory: top)
        defer { layer.tree.close() }
        let st = try Files.fstat(layer.tree, path: layer.directory)
        self.rootFileid = try self.store.fileid(
            .init(key: .init(layer: 0, ino: UInt64(st.st_ino), isUpper: false), parent: 0, name: []))
    }

    /// The store's id, recorded by each client upper that takes fileids from it.
    var namespaceID: UInt64 { self.store.namespaceID }

    /// Commits what is queued and closes the database; namespaces using the store must be closed first.
    public func close() {
        try? self.store.commits.drain()
        self.store.sidecar.close()
    }
}

// How a namespace's identity store takes lower fileids from its shared store (Docs/FORMAT.md, "Shared lower
// identities").
extension IdentityStore {
    /// The meta keys of the shared store a per-client store takes lower fileids from: its id (`namespaceID`), its
    /// handle key and the first fileid of its range (`SharedIdentities.base`).
    static let sharedStoreKeys = ["sharedIdentities", "sharedKey0", "sharedKey1", "sharedBase"]

    /// The records of a shared store an upper made with (`createUpper`).
    static func recordShared(_ shared: SharedIdentities, _ db: Database) throws {
        let values = [shared.namespaceID, shared.store.handleKey.k0, shared.store.handleKey.k1, shared.base]
        for (key, value) in zip(Self.sharedStoreKeys, values) { try MetaRecord(key: key, value: value).save(db) }
    }

    /// Which shared store this store's handles of the shared range are tagged with (`store` set if lower fileids
    /// come from `shared`). An upper takes `shared` if it recorded that store, or if it has no row in its range (then
    /// it records it, once). A row in the range made against another store (its `identity.db` lost and made anew)
    /// could name another object than the new store gives that fileid: such an upper keeps numbering lower objects
    /// itself, as before shared stores, and its copied-up objects keep the tags of the store they were numbered in.
    static func adoptShared(
        _ shared: SharedIdentities?, sidecar: Sidecar, logger: Logger?
    ) throws(UnionError) -> (store: SharedIdentities?, key: HandleKey, range: Range<UInt64>)? {
        let (recorded, inRange) = try sidecar.read("read the shared identity store") { db -> ([UInt64]?, Bool) in
            let rows = try MetaRecord.fetchAll(db, keys: Self.sharedStoreKeys)
            let values = Self.sharedStoreKeys.compactMap { key in
                rows.first(where: { $0.key == key })?.value
            }
            guard let shared else { return (values.count == 4 ? values : nil, false) }
            let inRange = try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM identity WHERE fileid >= ? AND fileid < ?)",
                arguments: [shared.range.lowerBound.sqliteValue, shared.range.upperBound.sqliteValue])
            return (values.count == 4 ? values : nil, inRange ?? false)
        }
        let old = recorded.map {
            (
                store: nil as SharedIdentities?, key: HandleKey(k0: $0[1], k1: $0[2]),
                range: $0[3]..<($0[3] + SharedIdentities.span)
            )
        }
        guard let shared else { return old }
        if recorded?[0] == shared.namespaceID { return (shared, shared.store.handleKey, shared.range) }
        if inRange {
            logger?.warning(
                "this upper holds fileids of another shared identity store than its export's (state_dir/exports made anew?): it numbers its lower objects itself"
            )
            return old
        }
        try sidecar.write("record the shared identity store") { db in try Self.recordShared(shared, db) }
        return (shared, shared.store.handleKey, shared.range)
    }

    /// Records the namespace's root fileid, which stands for the shared store's root in shared identities' parents.
    func attachRoot(_ fileid: UInt64) {
        self.clientRoot.store(fileid, ordering: .relaxed)
    }

    /// `s` as the shared store sees it, if its fileid may come from there: a lower object seen under the root or
    /// under a directory with a shared fileid (in an upper made before shared stores, a directory may have a fileid
    /// of its own: its lower children keep getting theirs). A hard-linked file takes its shared fileid too, as a
    /// listing (which sees no link count) gives it, but in a row of this namespace's own (`fileids`): its names are
    /// this namespace's bookkeeping. The shared store numbers the lowers from 0 and has no upper.
    func sharedSighting(_ sighting: Sighting, _ shared: SharedIdentities) -> Sighting? {
        guard !sighting.key.isUpper, sighting.key.layer >= 1 else { return nil }
        let parent: UInt64
        let root = self.clientRoot.load(ordering: .relaxed)
        if sighting.parent == root && root != 0 {
            parent = shared.rootFileid
        } else if shared.range.contains(sighting.parent) {
            parent = sighting.parent - shared.base
        } else {
            return nil
        }
        return Sighting(
            key: Key(layer: sighting.key.layer - 1, ino: sighting.key.ino, isUpper: false), parent: parent,
            name: sighting.name)
    }

    /// The identity of shared fileid `fileid` as this namespace numbers it; nil outside the shared range.
    func sharedIdentity(_ fileid: UInt64) -> Identity? {
        guard let shared = self.shared, shared.range.contains(fileid) else { return nil }
        let root = self.clientRoot.load(ordering: .relaxed)
        let sharedFileid = fileid - shared.base
        guard root != 0, sharedFileid != shared.rootFileid, var identity = shared.store.identity(sharedFileid),
            identity.upperIno == nil,
            identity.parent < SharedIdentities.span
        else { return nil }
        identity.fileid = fileid
        identity.parent = identity.parent == shared.rootFileid ? root : shared.base + identity.parent
        identity.originLayer += 1
        return identity
    }

    /// fileids of `sightings` from the shared store (nil where it does not give one); new ones are allocated and made
    /// durable there, so a reply naming one survives a crash as any first sighting.
    func sharedFileids(_ sightings: [Sighting]) throws(UnionError) -> [UInt64?]? {
        guard let shared = self.shared else { return nil }
        let (asked, translated) = self.tables.withLock { tables -> ([Int], [Sighting]) in
            var asked: [Int] = []
            var translated: [Sighting] = []
            for (index, sighting) in sightings.enumerated() where Self.existing(tables, sighting.key) == nil {
                guard let asShared = self.sharedSighting(sighting, shared) else { continue }
                asked.append(index)
                translated.append(asShared)
            }
            return (asked, translated)
        }
        guard !asked.isEmpty else { return nil }
        let got = try shared.store.fileids(translated)
        var out = [UInt64?](repeating: nil, count: sightings.count)
        for (position, index) in asked.enumerated() where got[position] < SharedIdentities.span {
            out[index] = shared.base + got[position]
        }
        return out
    }

    /// Before this namespace changes what it knows of a shared fileid (copy-up, rename, names): the identity becomes
    /// a row of its own, with the same fileid, queued ahead of the change's records. Other clients keep the shared one.
    func ownRow(_ tables: inout Tables, _ fileid: UInt64) -> [SidecarRecord] {
        guard tables.byFileid[fileid] == nil, let identity = self.sharedIdentity(fileid) else { return [] }
        tables.insert(identity)
        let record = IdentityRecord(
            fileid: identity.fileid, parent: identity.parent, name: Data(identity.name),
            originLayer: Int64(identity.originLayer),
            originIno: identity.originIno, upperIno: nil,
            isIndexed: false, lowerLinkCount: Int64(identity.lowerLinkCount),
            lowerNamesGone: Int64(identity.lowerNamesGone))
        return [{ db in try Self.insert(record, db) }]
    }
}
