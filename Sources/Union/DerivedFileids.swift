import Basics
import Foundation
import Glibc
import Synchronization

/// fileids of lower objects derived from where they come from (layer index and inode), as knfsd and ganesha derive
/// handles from the kernel's: the same object always gets the same number, so a first sighting need not be durable
/// before the reply that shows it. Its identity row is still written (it holds the recorded name that handle
/// resolution walks), but it rides the next group commit instead of making the reply wait for a flush. A row lost to
/// a crash is found again by `UnionNamespace.rediscover`: the number says which layer and inode to look for.
///
/// Valid only while the lowers do not change under the store (Docs/FORMAT.md, "Derived lower fileids"): a store whose
/// stack of lowers changed stops deriving for good (`IdentityStore.derivesFileids`), since the same layer index and
/// inode could then be another object than the one an old handle named.
enum DerivedFileids {
    /// Derived fileids take `[base, 2 × base)`: above anything a store allocates (a counter from 1, reserved 4,096 at a
    /// time) and below `SharedIdentities.span`, so that a shared store's derived fileids fit in a version's range.
    static let base: UInt64 = 1 << 39
    /// Layers 0–127 and 32-bit inodes (ext4's; XFS's and btrfs's are 32-bit on small file systems): an object outside
    /// them gets an allocated fileid, made durable before the reply as before.
    static let layerLimit = 128
    static let inoLimit: UInt64 = 1 << 32

    static func fileid(layer: Int, ino: UInt64) -> UInt64? {
        guard layer >= 0, layer < Self.layerLimit, ino > 0, ino < Self.inoLimit else { return nil }
        return Self.base | (UInt64(layer) << 32) | ino
    }

    /// The origin a derived fileid was made from; nil for any other number.
    static func origin(_ fileid: UInt64) -> OriginKey? {
        guard fileid >= Self.base, fileid < 2 * Self.base else { return nil }
        let ino = fileid & (Self.inoLimit - 1)
        guard ino > 0 else { return nil }
        return OriginKey(layer: Int((fileid - Self.base) >> 32), ino: ino)
    }
}

extension UnionNamespace {
    /// The object of derived fileid `fileid` whose identity row is gone (lost to a crash before its group commit, or a
    /// removed object's): its layer's tree is searched for the inode, and the object is looked up again along the
    /// path found, from its deepest ancestor with a known identity (a renamed directory shows its lower content under
    /// its new name). nil when no visible object has that fileid any more (a stale handle), remembered for this run so
    /// that a stale handle costs one search.
    func rediscover(_ fileid: UInt64, depth: Int) throws(UnionError) -> Node? {
        guard let origin = self.identities.derivedOrigin(fileid), origin.layer < self.layers.count,
            !self.layers[origin.layer].isUpper, !self.identities.isUnfound(fileid)
        else { return nil }
        let layer = self.layers[origin.layer]
        var path: [(name: [UInt8], ino: UInt64)] = []
        var budget = Self.rediscoverySearchLimit
        let node: Node?
        if try Self.search(layer.tree, for: origin.ino, in: layer.directory, &path, &budget) {
            node = try self.follow(path, layer: origin.layer, depth: depth)
        } else {
            node = nil
        }
        guard let node, node.fileid == fileid else {
            self.identities.markUnfound(fileid)
            return nil
        }
        self.stats.rediscoveries.add(1, ordering: .relaxed)
        return node
    }

    /// Directories a search for a lost identity reads at most (a tree that large takes seconds; a handle beyond it is
    /// stale).
    static let rediscoverySearchLimit = 1_000_000

    /// Depth-first search of `dir` for inode `ino`; on success `path` holds the names (and inodes) leading to it.
    private static func search(
        _ dir: FD, for ino: UInt64, in directory: String, _ path: inout [(name: [UInt8], ino: UInt64)],
        _ budget: inout Int
    ) throws(UnionError) -> Bool {
        budget -= 1
        guard budget >= 0, path.count < 256 else { return false }
        let entries = try Files.list(dir, path: directory)
        if let hit = entries.first(where: { $0.ino == ino }) {
            path.append((hit.name, hit.ino))
            return true
        }
        for entry in entries where entry.type == UInt8(DT_DIR) || entry.type == UInt8(DT_UNKNOWN) {
            let sub: FD
            do throws(UnionError) {
                sub = try Files.openDirPath(dir, entry.name, path: directory)
            } catch {
                continue
            }
            defer { sub.close() }
            path.append((entry.name, entry.ino))
            if try Self.search(sub, for: ino, in: directory, &path, &budget) { return true }
            path.removeLast()
        }
        return false
    }

    /// Looks `path` (names from a lower layer's root) up in the union, starting below its deepest ancestor whose
    /// identity is known.
    private func follow(_ path: [(name: [UInt8], ino: UInt64)], layer: Int, depth: Int) throws(UnionError) -> Node? {
        var start = try self.rootNode()
        var rest = path[...]
        for ancestor in stride(from: path.count - 2, through: 0, by: -1) {
            guard let known = self.identities.knownFileid(OriginKey(layer: layer, ino: path[ancestor].ino)),
                let node = try? self.resolve(fileid: known, depth: depth + 1), node.isDirectory
            else { continue }
            start = node
            rest = path[(ancestor + 1)...]
            break
        }
        var node = start
        for step in rest {
            guard node.isDirectory, let child = try? self.child(of: node, step.name) else { return nil }
            node = child
        }
        return node
    }
}

extension IdentityStore {
    /// The derived fileid of a lower object seen first, if this store derives them and the number is free (a
    /// copied-up object keeps its fileid when a change of the stack re-keys it by its upper inode; derivation ends
    /// then, but a number is never given twice).
    func derivedFileid(_ tables: Tables, _ key: Key) -> UInt64? {
        guard !key.isUpper, self.derivesFileids.load(ordering: .relaxed),
            let fileid = DerivedFileids.fileid(layer: key.layer, ino: key.ino), tables.byFileid[fileid] == nil
        else { return nil }
        return fileid
    }

    /// Where to look for the object of `fileid` when it has no identity row (`rediscover`), as this namespace numbers
    /// its layers: a derived fileid of this store, or of the shared store (whose layer 0 is this namespace's layer 1).
    func derivedOrigin(_ fileid: UInt64) -> OriginKey? {
        if self.derivesFileids.load(ordering: .relaxed), let origin = DerivedFileids.origin(fileid) { return origin }
        guard let shared = self.shared, shared.range.contains(fileid),
            shared.store.derivesFileids.load(ordering: .relaxed),
            let origin = DerivedFileids.origin(fileid - shared.base)
        else { return nil }
        return OriginKey(layer: origin.layer + 1, ino: origin.ino)
    }

    /// The fileid this namespace shows for the lower object `origin`, if it has an identity already.
    func knownFileid(_ origin: OriginKey) -> UInt64? {
        if let fileid = self.tables.withLock({ $0.byOrigin[origin] }) { return fileid }
        guard let shared = self.shared, origin.layer >= 1,
            let fileid = shared.store.tables.withLock({
                $0.byOrigin[OriginKey(layer: origin.layer - 1, ino: origin.ino)]
            }), fileid < SharedIdentities.span
        else { return nil }
        return shared.base + fileid
    }

    func isUnfound(_ fileid: UInt64) -> Bool {
        self.unfound.withLock { $0.contains(fileid) }
    }

    func markUnfound(_ fileid: UInt64) {
        self.unfound.withLock { set in
            if set.count >= 65_536 { set.removeAll() }
            set.insert(fileid)
        }
    }

    /// Commits the rows nobody waits for soon, on a thread of its own: one flush at a time, and another right after it
    /// while rows arrived meanwhile (a listing's pages share them). Until then a crash may lose them; their objects
    /// are found again by their derived fileids.
    func flushSoon() {
        guard !self.flushing.exchange(true, ordering: .acquiringAndReleasing) else { return }
        DispatchQueue.global(qos: .utility).async {
            while true {
                let target = self.commits.lastQueued
                // A failed flush keeps its records queued for the next one; an abandoned store (a simulated crash)
                // flushes nothing more.
                try? self.commits.waitDurable(target)
                self.flushing.store(false, ordering: .releasing)
                guard self.commits.lastQueued != target,
                    !self.flushing.exchange(true, ordering: .acquiringAndReleasing)
                else { return }
            }
        }
    }
}
