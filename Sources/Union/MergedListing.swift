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
    /// the generation.
    var objects: [ListedObject] = []
    var objectsGeneration: UInt64 = .max
}

/// What a listing page found for one entry.
enum ListedObject: Sendable {
    case unknown
    /// Vanished since the listing was made (the page gives its name without handle and attributes).
    case absent
    case found(FoundObject)
}

/// The layer and inode a listing entry showed.
struct ListedTop: Sendable {
    var layer: Int
    var ino: UInt64
}

extension UnionNamespace {
    func mergedNames(_ dir: Node) throws(UnionError) -> [(name: [UInt8], key: IdentityStore.Key)] {
        var seen: Set<[UInt8]> = []
        var hidden: Set<[UInt8]> = []
        var out: [(name: [UInt8], key: IdentityStore.Key)] = []
        for d in dir.dirs {
            guard let dfd = d.dir else { continue }
            let layer = self.layers[d.layer]
            var whiteoutsHere: Set<[UInt8]> = []
            for e in try Files.list(dfd, path: d.pathString) {
                if layer.kind == .plainLower {
                    if Names.isOCIMarker(e.name) {
                        if e.name != Names.ociOpaqueMarker { whiteoutsHere.insert(Array(e.name.dropFirst(4))) }
                        continue
                    }
                    if e.type == UInt8(DT_CHR) || e.type == UInt8(DT_UNKNOWN),
                        let st = try Files.statAt(dfd, e.name, path: d.pathString), st.isOverlayWhiteout
                    {
                        whiteoutsHere.insert(e.name)
                        continue
                    }
                }
                if seen.contains(e.name) || hidden.contains(e.name) { continue }
                seen.insert(e.name)
                var ino = e.ino
                if e.type == UInt8(DT_DIR) || e.type == UInt8(DT_UNKNOWN),
                    let st = try Files.statAt(dfd, e.name, path: d.pathString)
                {
                    ino = UInt64(st.st_ino)  // d_ino of a mount point is not the inode a lookup finds
                }
                out.append((e.name, IdentityStore.Key(layer: d.layer, ino: ino, isUpper: layer.isUpper)))
            }
            switch layer.kind {
            case .upper: whiteoutsHere = self.upperRecords.withLock { $0.whiteouts[d.ino] ?? [] }
            case .strataLower: whiteoutsHere = layer.lowerRecords.whiteouts[d.ino] ?? []
            case .plainLower: break
            }
            hidden.formUnion(whiteoutsHere)
        }
        return out
    }

    /// The sorted merged listing of `dir`, cached per directory until a change in it.
    func listing(_ dir: Node) throws(UnionError) -> MergedListing {
        if let cached = self.listings.withLock({ $0.get(dir.fileid) }) { return cached }
        let names = try self.mergedNames(dir)
        let fileids = try self.identities.fileids(names.map { .init(key: $0.key, parent: dir.fileid, name: $0.name) })
        let entries = Cookies.assign(zip(names, fileids).map { ($0.name, $1) }, key: self.cookieKey)
        var topOf: [[UInt8]: ListedTop] = [:]
        topOf.reserveCapacity(names.count)
        for n in names { topOf[n.name] = ListedTop(layer: n.key.layer, ino: n.key.ino) }
        let listing = MergedListing(
            entries: entries, tops: entries.map { topOf[$0.name] ?? ListedTop(layer: -1, ino: 0) })
        self.listings.withLock { $0.put(dir.fileid, listing) }
        return listing
    }

    func invalidateListing(_ fileids: UInt64...) {
        self.listings.withLock { c in for f in fileids { c.remove(f) } }
    }
}

/// A small LRU of merged listings (directory fileid → listing).
struct ListingCache: Sendable {
    var capacity = 64
    var items: [UInt64: (listing: MergedListing, tick: UInt64)] = [:]
    var tick: UInt64 = 0

    mutating func get(_ k: UInt64) -> MergedListing? {
        guard let v = self.items[k] else { return nil }
        self.tick &+= 1
        self.items[k] = (v.listing, self.tick)
        return v.listing
    }

    mutating func put(_ k: UInt64, _ l: MergedListing) {
        self.tick &+= 1
        self.items[k] = (l, self.tick)
        if self.items.count > self.capacity, let oldest = self.items.min(by: { $0.value.tick < $1.value.tick }) {
            self.items[oldest.key] = nil
        }
    }

    /// Keeps the objects a page found for entries `start...` of the listing of `k`, taken at `generation`, unless the
    /// generation moved meanwhile (`current`). Called under the namespace read lock, so the listing cached for `k` is
    /// the one the page used (only a change, under the write lock, alters a listing).
    mutating func keepObjects(_ k: UInt64, from start: Int, _ found: [ListedObject], generation: UInt64, current: UInt64) {
        guard generation == current, var v = self.items[k], start + found.count <= v.listing.entries.count else { return }
        self.items[k] = nil  // the listing's arrays uniquely referenced while they change
        if v.listing.objectsGeneration != generation || v.listing.objects.count != v.listing.entries.count {
            v.listing.objects = Array(repeating: .unknown, count: v.listing.entries.count)
            v.listing.objectsGeneration = generation
        }
        v.listing.objects.replaceSubrange(start..<(start + found.count), with: found)
        self.items[k] = v
    }

    mutating func remove(_ k: UInt64) { self.items[k] = nil }
    mutating func removeAll() { self.items = [:] }
}
