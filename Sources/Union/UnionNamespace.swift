import Basics
import Glibc
import Logging
import Synchronization

/// A union namespace: an optional writable upper layer over read-only lower layers (Docs/SEMANTICS.md).
///
/// Thread-safety: every method may be called from any thread. Operations that change the namespace (create, remove,
/// rename, copy-up, ...) hold `namespaceLock` for writing; lookups, reads, listings and writes to objects already in
/// the upper layer hold it for reading and run in parallel. A copy-up re-checks under the write lock, so concurrent
/// writers of one lower file copy it up exactly once.
public final class UnionNamespace: Sendable {
    let logger: Logger
    /// Index 0 is the upper layer when there is one; then the lowers, top-most first.
    let layers: [Layer]
    let upper: UpperLayer?
    let identities: IdentityStore
    /// The upper layer's whiteouts, opaque markers and redirects (mirror of its sidecar, updated after each commit).
    let upperRecords: Locked<LayerRecords>
    /// Merged listings of the directories listed last (directory fileid → listing), weighed by their entries (at most
    /// `cachedListingEntries` together, `init`). A cached listing answers a READDIRPLUS page without reading the
    /// directory or stat'ing an entry (`MergedListing.objects`). Kept for 64 directories, it was no cache at all for a
    /// client listing a tree of 100 (each directory evicted before its turn came again: a warm listing of such a tree
    /// read and stat'ed everything, at 0.27–0.40× nfs-ganesha's rate); weighed by names, a listing of a million
    /// names cannot take the memory of thousands of small ones either.
    let listings: Locked<LRUMap<UInt64, MergedListing>>
    /// The names the cached listings hold together by default: a listing with its entries' handles and attributes
    /// takes about 180 bytes a name (measured: a warm tree of 50,100 names kept 3.3 MiB more than 32,000), so about
    /// 23 MiB at this limit.
    public static let defaultCachedListingEntries = 131_072
    /// The directories whose listings are kept, whatever their size.
    static let maxCachedListings = 4_096
    let namespaceLock = RWLock()
    let isClosed = Atomic<Bool>(false)
    let rootFileid: UInt64
    /// The secret of READDIR cookies (`Cookies`), kept in the namespace's sidecar.
    let cookieKey: CookieKey
    /// False when the identity store is a `SharedIdentities` one (a read-only namespace of a per-client export): it
    /// outlives the namespace.
    let ownsIdentities: Bool
    /// Public counters (`statistics`).
    let stats = StatisticsCounters()
    let nodeCache: Locked<NodeCache>
    /// Per-object serialisation of copy-ups for WRITE (striped by fileid).
    let copyUpLocks: [StripeLock] = (0..<64).map { _ in StripeLock() }
    /// Tests' crash points and callbacks; nil in the server.
    let hooks: UnionHooks?
    /// True while a namespace change runs (under the write lock): the node cache is bypassed.
    let isMutating = Atomic<Bool>(false)
    /// Empty files kept in work/ by REMOVE for the next CREATE (`SpareInodes.swift`).
    let spareInodes = Locked(SpareInodes())
    /// Moves on every step that may change some object's attributes: each namespace change, each WRITE, and each
    /// READ, READLINK or listing that moved an access time. The handles and attributes a listing page found stay in
    /// its cached listing for as long as this has not moved (`MergedListing.objects`).
    let attributeGeneration = Atomic<UInt64>(0)
    /// Moves when a listing moved its directory's access time (reading a directory may set it). Listed directories'
    /// attributes are taken again after it moved (`ListedObject`); it spares the other entries, so listing a tree
    /// does not make every listing already cached read its attributes again.
    let directoryAtimeGeneration = Atomic<UInt64>(0)
    /// How far the READs of recently read files got (fileid → where they ended, how far they were read ahead), to
    /// tell sequential readers and read ahead of them (`readAhead`).
    let readEnds = Locked(LRUMap<UInt64, ReadProgress>(capacity: 256))
    /// Moves at the end of every namespace change (`mutate`), inside its write lock: what a name shows may have
    /// changed. The lookup cache answers only at the generation its entries were taken at (LookupCache.swift).
    let namesGeneration = Atomic<UInt64>(0)
    /// What LOOKUPs of names gave, at `namesGeneration`.
    let lookups = Locked(LookupCache(capacity: 4096))

    /// - Parameters:
    ///   - upper: a writable layer directory (`tree/`, `work/`, `index/`, `layer.db` created if missing), or `nil`
    ///     for a read-only namespace.
    ///   - lowers: read-only layer directories, top-most first.
    ///   - stateDirectory: where a read-only namespace keeps its identity sidecar (`identity.db`); used only when
    ///     `upper == nil`. Without it identities live in memory and handles do not survive a restart.
    ///   - cachedObjects: how many resolved objects are kept between namespace changes; each cached directory holds
    ///     one descriptor per layer it merges, so this bounds the namespace's descriptors (about
    ///     `cachedObjects × layers`, plus one per layer and a few per running call).
    ///   - cachedListingEntries: how many names the cached merged listings hold together (`listings`; see there).
    ///   - logger: receives open-time repairs and failures.
    /// - Throws: `.invalid` without any layer; `.io`/`.sidecar` when a layer cannot be opened.
    public convenience init(
        upper: String?, lowers: [String], stateDirectory: String? = nil,
        logger: Logger
    ) throws(UnionError) {
        try self.init(upper: upper, lowers: lowers, stateDirectory: stateDirectory, cachedObjects: 256, logger: logger)
    }

    /// Opens the stack; see `init(upper:lowers:stateDirectory:logger:)`.
    ///   - hooks: tests' crash points and callbacks (`UnionHooks`); nil outside tests.
    ///   - sharedIdentities: the identities of these lowers' objects shared by every client stacked on them. With an
    ///     upper, lower objects it never changed take their fileids from there (when it is of this very stack);
    ///     without one, it is this namespace's identity store (`stateDirectory` is then not used).
    ///   - spareUpper: a spare upper made by `makeSpareUpper` for these lowers and shared store, in the directory of
    ///     `upper`: when `upper` has no sidecar yet, it is made by renaming the spare into place (`claimSpare`) rather
    ///     than afresh. The spare is gone afterwards if it was taken.
    public init(
        upper: String?, lowers: [String], stateDirectory: String?, cachedObjects: Int,
        cachedListingEntries: Int = UnionNamespace.defaultCachedListingEntries,
        logger: Logger, hooks: UnionHooks? = nil, sharedIdentities: SharedIdentities? = nil,
        spareUpper: String? = nil
    ) throws(UnionError) {
        self.logger = logger
        self.hooks = hooks
        self.nodeCache = Locked(NodeCache(capacity: max(0, cachedObjects)))
        self.listings = Locked(LRUMap(capacity: Self.maxCachedListings, weightLimit: cachedListingEntries))
        var layers: [Layer] = []
        let sidecar: Sidecar
        var upperRejected = 0
        let signature = Self.stackSignature(lowers)
        let shared = sharedIdentities.flatMap { $0.signature == signature ? $0 : nil }
        if upper == nil, sharedIdentities != nil, shared == nil {
            // Its store is that shared one: opening identity.db a second time would hand out fileids twice.
            throw .invalid("the shared identity store given is of other lowers than \(lowers)")
        }
        var fresh = false
        if let upper {
            if try Files.statAbsolute(upper + "/layer.db", followingLinks: true) == nil {
                let claimed =
                    try spareUpper.map { spare throws(UnionError) in
                        try Self.claimSpare(spare, as: upper, lowers: lowers, logger: logger)
                    } ?? false
                if !claimed { try Self.createUpper(upper, lowers: lowers, shared: shared, logger: logger) }
                fresh = true
            }
            let upperLayer = try UpperLayer(directory: upper)
            self.upper = upperLayer
            sidecar = upperLayer.sidecar
            layers.append(
                Layer(
                    index: 0, kind: .upper, directory: upper,
                    tree: try Files.openDirectoryAbsolute(upper + "/tree"), lowerRecords: LayerRecords()))
            let records = try sidecar.loadLayerRecords()
            upperRejected = records.rejected
            self.upperRecords = Locked(records)
        } else {
            self.upper = nil
            if let shared {
                sidecar = shared.store.sidecar
            } else if let stateDirectory {
                try Files.mkdirAll(stateDirectory)
                sidecar = try Sidecar(path: stateDirectory + "/identity.db", readOnly: false)
            } else {
                sidecar = try Sidecar(path: nil, readOnly: false)
            }
            self.upperRecords = Locked(LayerRecords())
        }
        for lower in lowers {
            layers.append(try Layer.openLower(index: layers.count, directory: lower))
        }
        for (layer, count) in [(upper ?? "", upperRejected)]
            + layers.map({ ($0.directory, $0.lowerRecords.rejected) }) where count > 0
        {
            logger.warning(
                "sidecar records naming paths that could leave the layer were ignored (not written by Strata)",
                metadata: ["layer": "\(layer)", "records": "\(count)"])
        }
        guard let top = layers.first else {
            throw .invalid("a union namespace needs an upper or at least one lower layer")
        }
        self.layers = layers
        if upper == nil, let shared {
            self.identities = shared.store
            self.ownsIdentities = false
        } else {
            self.identities = try IdentityStore(sidecar: sidecar, fresh: fresh, shared: shared, logger: logger)
            self.ownsIdentities = true
        }
        self.cookieKey = try CookieKey.load(sidecar)
        let lowerPaths = lowers.map(Self.realPath)
        // The stack is rewritten only when it changed: an open with nothing to record makes no durable write.
        if try !Self.recordsStack(sidecar, signature: signature, lowerPaths: lowerPaths) {
            try self.identities.checkStack(signature: signature, lowerPaths: lowerPaths, logger: logger)
        }
        let rootSt = try Files.fstat(top.tree, path: top.directory)
        self.rootFileid = try self.identities.fileid(
            .init(key: .init(layer: 0, ino: UInt64(rootSt.st_ino), isUpper: top.isUpper), parent: 0, name: []))
        if self.ownsIdentities { self.identities.attachRoot(self.rootFileid) }
        do {
            try self.cleanWork()
            try self.identities.commits.drain()
        } catch {
            // Open-time repair is best effort: a leftover that cannot be removed must not keep the export down.
            logger.error("open-time repair of the upper layer failed", metadata: ["error": "\(error)"])
        }
    }

    static func realPath(_ path: String) -> String {
        realpath(path, nil).map { resolved -> String in
            defer { free(resolved) }
            return String(cString: resolved)
        } ?? path
    }

    /// FNV-1a 64 of the lowers' real paths, in order, each ended by a NUL.
    static func stackSignature(_ lowers: [String]) -> UInt64 {
        var hasher = FNV1a64()
        for lower in lowers {
            hasher.combine(Self.realPath(lower).utf8)
            hasher.combine(CollectionOfOne(0))
        }
        return hasher.value
    }

    /// A named step of a multi-step change (see the crash-order comments). Tests set `hooks.crashAt` to stop a
    /// change there, leaving exactly the on-disk state a crash at that point would leave; a reopen must show a
    /// consistent union.
    func crashPoint(_ name: String) throws(UnionError) {
        guard let hooks = self.hooks else { return }
        if hooks.crashAt.withLock({ $0 == name }) { throw .simulatedCrash(point: name) }
    }

    /// The root directory's handle.
    public var rootHandle: ObjectHandle {
        self.handle(fileid: self.rootFileid)
    }

    /// True without an upper layer: every change answers `.readOnly`.
    public var isReadOnly: Bool { self.upper == nil }

    /// Releases descriptors and the sidecar. Later calls answer `.stale`.
    public func close() {
        self.namespaceLock.withWriteLock {
            guard !self.isClosed.exchange(true, ordering: .acquiring) else { return }
            do {
                try self.identities.commits.drain()
            } catch {
                self.logger.error("close: queued changes could not be committed", metadata: ["error": "\(error)"])
            }
            self.listings.withLock { $0.removeAll() }
            self.nodeCache.withLock { $0.removeAll() }
            if let work = self.upper?.work {
                for number in self.spareInodes.withLock({ $0.numbers }) {
                    _ = try? SpareInodes.name(number).withCName { unlinkat(work.raw, $0, 0) }
                }
                self.spareInodes.withLock { $0.removeAll() }
            }
            if self.ownsIdentities { self.identities.sidecar.close() }
            for layer in self.layers { layer.tree.close() }
            self.upper?.work.close()
            self.upper?.index.close()
            self.upper?.lock.close()
        }
    }

    // MARK: - Reading

    /// The namespace read lock for a call that only reads: waited for, except inside `NoWaiting.attempt`, where a
    /// change holding or awaiting it refuses the attempt.
    func readLocked<T>(_ body: () throws(UnionError) -> T) throws(UnionError) -> T {
        if NoWaiting.isActive { return try self.namespaceLock.withReadLockIfFree(orThrow: NoWaiting.refuse, body) }
        return try self.namespaceLock.withReadLock(body)
    }

    /// GETATTR.
    public func getattr(_ h: ObjectHandle) throws(UnionError) -> Attributes {
        try self.readLocked { () throws(UnionError) -> Attributes in
            self.attributes(try self.resolve(h))
        }
    }

    /// LOOKUP: needs search permission on `dir`.
    public func lookup(
        _ dir: ObjectHandle, _ name: [UInt8], as cred: Credentials
    ) throws(UnionError) -> (
        ObjectHandle, Attributes
    ) {
        try Names.validate(name)
        return try self.namespaceLock.withReadLock { () throws(UnionError) -> (ObjectHandle, Attributes) in
            let directory = try self.resolveDirectory(dir)
            try Permission.require(directory.top.st, cred, Permission.exec)
            guard let child = try self.child(of: directory, name) else { throw .noEntry }
            return (self.handle(child), self.attributes(child))
        }
    }

    /// LOOKUP of "..": the root's parent is the root.
    public func lookupParent(_ dir: ObjectHandle, as cred: Credentials) throws(UnionError) -> (ObjectHandle, Attributes)
    {
        try self.namespaceLock.withReadLock { () throws(UnionError) -> (ObjectHandle, Attributes) in
            let directory = try self.resolveDirectory(dir)
            try Permission.require(directory.top.st, cred, Permission.exec)
            let parent = try self.resolve(self.handle(fileid: directory.parentFileid))
            return (self.handle(parent), self.attributes(parent))
        }
    }

    /// ACCESS: which of `requested` the caller has, as the kernel would answer.
    public func access(
        _ h: ObjectHandle, _ requested: AccessMask, as cred: Credentials
    ) throws(UnionError)
        -> AccessMask
    {
        try self.accessForReply(h, requested, as: cred).granted
    }

    /// READLINK.
    public func readlink(_ h: ObjectHandle, as cred: Credentials) throws(UnionError) -> [UInt8] {
        try self.readlinkForReply(h, as: cred).target
    }

    /// READ into a new array; see `read(_:offset:into:as:)`.
    public func read(
        _ h: ObjectHandle, offset: UInt64, count: Int, as cred: Credentials
    ) throws(UnionError) -> (
        data: [UInt8], isEOF: Bool
    ) {
        let want = max(0, min(count, 64 << 20))
        var data = [UInt8](repeating: 0, count: want)
        let result = data.withUnsafeMutableBytes { (buffer) -> Result<ReadResult, UnionError> in
            Result { () throws(UnionError) -> ReadResult in try self.read(h, offset: offset, into: buffer, as: cred) }
        }
        let got = try result.get()
        data.removeLast(want - got.count)
        return (data, got.isEOF)
    }

    /// Opens the object at `loc` (never following a symlink).
    func openData(_ loc: Location, _ flags: CInt) throws(UnionError) -> FD {
        guard let parent = loc.parent else { throw .isDirectory }
        return try Files.openAt(parent, loc.name, flags, path: loc.pathString)
    }

    /// READDIR: the merged listing after `cookie` (0 = from the start), at most `limit` entries. "." and ".." are not
    /// included. Any cookie resumes at the first name whose cookie is larger: cookies are always valid.
    public func readdir(
        _ dir: ObjectHandle, after cookie: UInt64, limit: Int = Int.max, as cred: Credentials
    )
        throws(UnionError) -> ListingPage
    {
        var taken = 0
        let page = try self.listDirectory(dir, after: cookie, withObjects: false, withParent: false, as: cred) { _ in
            taken += 1
            return taken <= limit
        }
        return ListingPage(
            entries: page.entries.map { ListingEntry(name: $0.name, fileid: $0.fileid, cookie: $0.cookie) },
            isComplete: page.isComplete)
    }

    /// For READDIRPLUS: the handle and attributes of a listed entry, without a permission check beyond the listing.
    public func handle(forEntry name: [UInt8], in dir: ObjectHandle) throws(UnionError) -> (ObjectHandle, Attributes) {
        try Names.validate(name)
        return try self.namespaceLock.withReadLock { () throws(UnionError) -> (ObjectHandle, Attributes) in
            let directory = try self.resolveDirectory(dir)
            guard let child = try self.child(of: directory, name) else { throw .noEntry }
            return (self.handle(child), self.attributes(child))
        }
    }

    /// FSSTAT: `fstatvfs` of the upper layer (or of the top-most lower).
    public func fsstat(_ h: ObjectHandle) throws(UnionError) -> FileSystemStats {
        try self.readLocked { () throws(UnionError) -> FileSystemStats in
            _ = try self.resolve(h)
            var sv = statvfs()
            _ = try Sys.retry("fstatvfs", self.layers[0].directory) { fstatvfs(self.layers[0].tree.raw, &sv) }
            let fragmentSize = UInt64(sv.f_frsize)
            return FileSystemStats(
                totalBytes: UInt64(sv.f_blocks) &* fragmentSize, freeBytes: UInt64(sv.f_bfree) &* fragmentSize,
                availableBytes: self.isReadOnly ? 0 : UInt64(sv.f_bavail) &* fragmentSize,
                totalFiles: UInt64(sv.f_files),
                freeFiles: UInt64(sv.f_ffree), availableFiles: self.isReadOnly ? 0 : UInt64(sv.f_favail))
        }
    }

    /// COMMIT: fsync of the upper file (objects only in a lower layer have nothing unstable), shared with concurrent
    /// COMMITs and stable WRITEs of the same file.
    public func commit(_ h: ObjectHandle, offset: UInt64, count: UInt64) throws(UnionError) {
        try self.commitData(h)
    }
}
