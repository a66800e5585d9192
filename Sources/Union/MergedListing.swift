import Basics
import Glibc

// The merged listing of a directory: every visible name exactly once, no whiteout, marker or hidden name.
// "Insert lowest layer entries before upper ones" (overlayfs readdir.c) becomes, top-down: a name seen in a higher
// layer wins; a whiteout in a layer hides the name in the layers below it (not in its own layer).

struct MergedListing: Sendable {
    var entries: [ListingEntry]
    /// Where each entry was found (same order as `entries`): a listing page answers each entry's attributes with one
    /// stat there.
    var tops: [ListedTop]
    /// Each entry's handle and attributes as a listing page found them (same order as `entries`, empty until a page
    /// asked), valid while the namespace's `attributeGeneration` is `objectsGeneration`: a warm READDIRPLUS page
    /// costs no system call and no identity lookup per entry. Exact: every step that may change an attribute moves
    /// the generation, and a directory entry also needs its own `directoryAtimeGeneration` (see `ListedObject`).
    var objects = ListedObjects()
    var objectsGeneration: UInt64 = .max

    /// What it weighs in the listing cache (`UnionNamespace.listings`): its names.
    var weight: Int { max(1, self.entries.count) }
}

/// The objects of a listing's entries, in chunks: a page keeps what it found by replacing its own chunks, where one
/// array of them all was copied whole for every page (the cache holds the listing too), and a first listing of a
/// directory of 50,000 names spent a quarter of its time copying.
struct ListedObjects: Sendable {
    static let chunkSize = 256
    private var chunks: [[ListedObject]] = []
    private(set) var count = 0

    init() {}

    init(unknown count: Int) {
        self.count = count
        self.chunks = stride(from: 0, to: count, by: Self.chunkSize).map { start in
            Array(repeating: .unknown, count: min(Self.chunkSize, count - start))
        }
    }

    subscript(index: Int) -> ListedObject {
        self.chunks[index / Self.chunkSize][index % Self.chunkSize]
    }

    /// Replaces the objects from `start` on with `found` (`start + found.count <= count`).
    mutating func replace(from start: Int, with found: [ListedObject]) {
        for (offset, object) in found.enumerated() {
            let index = start + offset
            self.chunks[index / Self.chunkSize][index % Self.chunkSize] = object
        }
    }
}

/// What a listing page found for one entry.
enum ListedObject: Sendable {
    case unknown
    /// Vanished since the listing was made (the page gives its name without handle and attributes).
    case absent
    /// `directoryAtimes`: the namespace's `directoryAtimeGeneration` when the page began. A listing moves only its
    /// directory's access time, which only that directory's own entry shows: a directory entry is taken again once
    /// that generation moved, every other entry stays.
    case found(FoundObject, directoryAtimes: UInt64)
}

/// The layer and inode a listing entry showed.
struct ListedTop: Sendable {
    var layer: Int
    var ino: UInt64
}

/// A name in the set of names a merged listing has taken from higher layers. An array of bytes hashes byte by byte
/// (a `Hasher` call per byte: in a directory merged from two layers, most of the cost of merging); this hashes the
/// bytes in one call.
private struct SeenName: Hashable {
    var bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func hash(into hasher: inout Hasher) {
        self.bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

extension UnionNamespace {
    func mergedNames(_ dir: Node) throws(UnionError) -> [(name: [UInt8], key: IdentityStore.Key)] {
        var seen: Set<SeenName> = []
        var hidden: Set<[UInt8]> = []
        var out: [(name: [UInt8], key: IdentityStore.Key)] = []
        // The names of the last layer need not be remembered: nothing below them is read.
        let last = dir.dirs.lastIndex { $0.dir != nil }
        for (position, location) in dir.dirs.enumerated() {
            guard let dfd = location.dir else { continue }
            let layer = self.layers[location.layer]
            var whiteoutsHere: Set<[UInt8]> = []
            let listed = try Files.list(dfd, path: location.pathString)
            out.reserveCapacity(out.count + listed.count)
            if position != last { seen.reserveCapacity(seen.count + listed.count) }
            for entry in listed {
                if layer.kind == .plainLower {
                    if Names.isOCIMarker(entry.name) {
                        if entry.name != Names.ociOpaqueMarker { whiteoutsHere.insert(Array(entry.name.dropFirst(4))) }
                        continue
                    }
                    if entry.type == UInt8(DT_CHR) || entry.type == UInt8(DT_UNKNOWN),
                        let st = try Files.statAt(dfd, entry.name, path: location.pathString), st.isOverlayWhiteout
                    {
                        whiteoutsHere.insert(entry.name)
                        continue
                    }
                }
                if (!seen.isEmpty && seen.contains(SeenName(entry.name)))
                    || (!hidden.isEmpty && hidden.contains(entry.name))
                {
                    continue
                }
                if position != last { seen.insert(SeenName(entry.name)) }
                var ino = entry.ino
                if entry.type == UInt8(DT_DIR) || entry.type == UInt8(DT_UNKNOWN),
                    let st = try Files.statAt(dfd, entry.name, path: location.pathString)
                {
                    ino = UInt64(st.st_ino)  // d_ino of a mount point is not the inode a lookup finds
                }
                out.append((entry.name, IdentityStore.Key(layer: location.layer, ino: ino, isUpper: layer.isUpper)))
            }
            switch layer.kind {
            case .upper: whiteoutsHere = self.upperRecords.withLock { $0.whiteouts[location.ino] ?? [] }
            case .strataLower: whiteoutsHere = layer.lowerRecords.whiteouts[location.ino] ?? []
            case .plainLower: break
            }
            hidden.formUnion(whiteoutsHere)
        }
        return out
    }

    /// The sorted merged listing of `dir`, cached per directory until a change in it; `didRead` tells whether its
    /// directories were read for it (which may have set their access times).
    func listing(_ dir: Node) throws(UnionError) -> (listing: MergedListing, didRead: Bool) {
        if let cached = self.listings.withLock({ $0.value(for: dir.fileid) }) { return (cached, false) }
        var names = try self.mergedNames(dir)
        try self.keyMergedDirectoriesWithoutRows(dir, &names)
        let fileids = try self.identities.fileids(names.map { .init(key: $0.key, parent: dir.fileid, name: $0.name) })
        let order = Cookies.order(names.map(\.name), key: self.cookieKey)
        let listing = MergedListing(
            entries: order.map {
                ListingEntry(name: names[$0.index].name, fileid: fileids[$0.index], cookie: $0.cookie)
            },
            tops: order.map { ListedTop(layer: names[$0.index].key.layer, ino: names[$0.index].key.ino) })
        self.listings.withLock { $0.set(listing, for: dir.fileid, weight: listing.weight) }
        return (listing, true)
    }

    /// Upper entries no identity row names (rare: a copy-up whose row a crash lost, a directory made in the upper
    /// outside Strata) are looked up as LOOKUP does, so that a copied-up directory gets the same fileid in a listing as
    /// in a LOOKUP (`mergedLowerWithoutRow`).
    private func keyMergedDirectoriesWithoutRows(
        _ dir: Node, _ names: inout [(name: [UInt8], key: IdentityStore.Key)]
    ) throws(UnionError) {
        let upperInodes = names.lazy.filter(\.key.isUpper).map(\.key.ino)
        let withoutRows = self.identities.upperInodesWithoutRows(Array(upperInodes))
        guard !withoutRows.isEmpty else { return }
        for index in names.indices where names[index].key.isUpper && withoutRows.contains(names[index].key.ino) {
            guard let found = try self.lookupIn(dir.dirs, names[index].name),
                let merged = self.mergedLowerWithoutRow(found)
            else { continue }
            names[index].key = self.identityKey(merged)
        }
    }

    func invalidateListing(_ fileids: UInt64...) {
        self.listings.withLock { listings in
            for fileid in fileids { listings.removeValue(for: fileid) }
        }
    }

    /// Keeps the objects a page found for entries `start...` of the listing of `dir`, taken at `generation`, unless
    /// the generation moved meanwhile (`current`). Called under the namespace read lock, so the listing cached for
    /// `dir` is the one the page used (only a change, under the write lock, alters a listing).
    func keepObjects(_ dir: UInt64, from start: Int, _ found: [ListedObject], generation: UInt64, current: UInt64) {
        guard generation == current else { return }
        self.listings.withLock { listings in
            guard var listing = listings.value(for: dir), start + found.count <= listing.entries.count else { return }
            if listing.objectsGeneration != generation || listing.objects.count != listing.entries.count {
                listing.objects = ListedObjects(unknown: listing.entries.count)
                listing.objectsGeneration = generation
            }
            listing.objects.replace(from: start, with: found)
            listings.set(listing, for: dir, weight: listing.weight)
        }
    }
}
