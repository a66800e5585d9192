import Basics
import Glibc

// The calls a file server makes to answer one request: each returns everything the answer needs (the object, its
// attributes, the directory's attributes, a listing page with every entry's handle and attributes) from one
// resolution of the handle under one hold of the namespace lock, so the answer describes one moment and costs one
// trip through the union. The single-purpose calls in UnionNamespace.swift stay for tools and tests.

/// A union object as an answer names it.
public struct FoundObject: Sendable, Equatable {
    public var handle: ObjectHandle
    public var attributes: Attributes

    public init(handle: ObjectHandle, attributes: Attributes) {
        self.handle = handle
        self.attributes = attributes
    }
}

/// LOOKUP: the directory's attributes (for the answer, found or not) and what the name gave.
public struct DirectoryLookup: Sendable {
    public var directory: Attributes
    public var found: Result<FoundObject, UnionError>
}

/// ACCESS: the bits granted and the object's attributes.
public struct AccessCheck: Sendable {
    public var granted: AccessMask
    public var attributes: Attributes
}

/// READLINK: the target and the link's attributes.
public struct LinkTarget: Sendable {
    public var target: [UInt8]
    public var attributes: Attributes
}

/// READ into a caller's buffer: how many bytes landed there, whether they reach the end of the file, and the file's
/// attributes after the read.
public struct ReadResult: Sendable {
    public var count: Int
    public var isEOF: Bool
    public var attributes: Attributes
}

/// One name of a listing page.
public struct DirectoryEntry: Sendable {
    public var name: [UInt8]
    public var fileid: UInt64
    public var cookie: UInt64
    /// Handle and attributes, when asked for and the caller may search the directory (a caller who may list but not
    /// search a directory learns names, never handles: LOOKUP would refuse them, as knfsd's READDIRPLUS does). nil
    /// also for a name that vanished since the listing was cached.
    public var object: FoundObject?
}

/// A page of a directory listing.
public struct DirectoryPage: Sendable {
    /// The directory itself.
    public var directory: FoundObject
    /// Its parent (the root's is the root), when asked for and the caller may search the directory.
    public var parent: FoundObject?
    /// Names after the cookie, in cookie order ("." and ".." are not included).
    public var entries: [DirectoryEntry]
    /// True when `entries` reaches the end of the listing.
    public var isComplete: Bool
}

extension UnionNamespace {
    /// LOOKUP of `name` in `dir`, "." and ".." included; search permission on `dir` is needed for every name.
    /// - Throws: only when `dir` itself cannot be resolved (stale); everything else is in `found`.
    public func lookupForReply(
        _ dir: ObjectHandle, _ name: [UInt8], as cred: Credentials
    ) throws(UnionError)
        -> DirectoryLookup
    {
        try self.readLocked { () throws(UnionError) -> DirectoryLookup in
            let directory = try self.resolve(dir)
            let dirAttributes = self.attributes(directory)
            func find() throws(UnionError) -> FoundObject {
                let isDot = name == [0x2e]
                let isDotDot = name == [0x2e, 0x2e]
                if !isDot && !isDotDot { try Names.validate(name) }
                guard directory.isDirectory else { throw .notDirectory }
                try Permission.require(directory.top.st, cred, Permission.exec)
                if isDot { return FoundObject(handle: dir, attributes: dirAttributes) }
                if isDotDot { return self.found(try self.resolve(self.handle(fileid: directory.parentFileid))) }
                guard let child = try self.lookupChild(of: directory, name) else { throw .noEntry }
                return self.found(child)
            }
            do throws(UnionError) {
                return DirectoryLookup(directory: dirAttributes, found: .success(try find()))
            } catch {
                return DirectoryLookup(directory: dirAttributes, found: .failure(error))
            }
        }
    }

    /// GETATTR from the caches alone, for a caller that must not block (an event loop): nil unless the namespace lock
    /// is free at once and the object is in the node cache. The one system call is the cached node's refresh (an
    /// `fstat` of its open directory, or an `fstatat` of a name whose directory is open and just used), which reads
    /// no disk for a local file system. A nil answer says nothing: ask `getattr`.
    public func getattrIfCached(_ h: ObjectHandle) -> Attributes? {
        self.namespaceLock.withReadLockIfFree { () -> Attributes? in
            guard let node = self.cachedNodeIfValid(h) else { return nil }
            return self.attributes(node)
        }
    }

    /// ACCESS from the caches alone (see `getattrIfCached`).
    public func accessIfCached(_ h: ObjectHandle, _ requested: AccessMask, as cred: Credentials) -> AccessCheck? {
        self.namespaceLock.withReadLockIfFree { () -> AccessCheck? in
            guard let node = self.cachedNodeIfValid(h) else { return nil }
            return AccessCheck(granted: self.granted(node, requested, cred), attributes: self.attributes(node))
        }
    }

    /// The node of `h` if the node cache holds it and it is still where it was (as `resolve`, without the walk).
    func cachedNodeIfValid(_ h: ObjectHandle) -> Node? {
        guard !self.isClosed.load(ordering: .relaxed), h.tag == self.identities.handleKey.tag(h.fileid) else {
            return nil
        }
        return try? self.cachedNode(h.fileid)
    }

    /// ACCESS: which of `requested` the caller has (see `access`), with the object's attributes.
    public func accessForReply(
        _ h: ObjectHandle, _ requested: AccessMask, as cred: Credentials
    ) throws(UnionError)
        -> AccessCheck
    {
        try self.readLocked { () throws(UnionError) -> AccessCheck in
            let node = try self.resolve(h)
            return AccessCheck(granted: self.granted(node, requested, cred), attributes: self.attributes(node))
        }
    }

    func granted(_ n: Node, _ requested: AccessMask, _ cred: Credentials) -> AccessMask {
        let st = n.dataStat
        var granted: AccessMask = []
        if Permission.allows(st, cred, Permission.read) { granted.insert(.read) }
        if Permission.allows(st, cred, Permission.write) && !self.isReadOnly {
            granted.formUnion(n.isDirectory ? [.modify, .extend, .delete] : [.modify, .extend])
        }
        if Permission.allows(st, cred, Permission.exec) {
            granted.insert(n.isDirectory ? .lookup : .execute)
        }
        return granted.intersection(requested)
    }

    /// READLINK with the link's attributes.
    public func readlinkForReply(_ h: ObjectHandle, as cred: Credentials) throws(UnionError) -> LinkTarget {
        try self.readLocked { () throws(UnionError) -> LinkTarget in
            var node = try self.resolve(h)
            let target = try self.linkTarget(node)
            // The link's attributes after the read, which may have set its atime (as GETATTR would show them next).
            if let st = try Self.restat(node.top), st.st_ino == node.top.st.st_ino {
                if st.st_atim.tv_sec != node.top.st.st_atim.tv_sec || st.st_atim.tv_nsec != node.top.st.st_atim.tv_nsec
                {
                    self.attributeGeneration.add(1, ordering: .releasing)
                }
                node.top.st = st
            }
            return LinkTarget(target: target, attributes: self.attributes(node))
        }
    }

    func linkTarget(_ n: Node) throws(UnionError) -> [UInt8] {
        guard n.type == .symlink, let parent = n.top.parent else { throw .invalid("not a symbolic link") }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = try n.top.name.withCName { (cName) throws(UnionError) -> Int in
            try Sys.retry("readlinkat", n.top.pathString) { readlinkat(parent.raw, cName, &buf, buf.count) }
        }
        return buf[0..<count].map { UInt8(bitPattern: $0) }
    }

    /// READ of up to `buffer.count` bytes at `offset` straight into `buffer` (the caller's reply buffer: the bytes are
    /// copied once, by the kernel). Who may read: `mayRead`. An event loop asks `readIfCached` first.
    public func read(
        _ h: ObjectHandle, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer, as cred: Credentials
    ) throws(UnionError) -> ReadResult {
        try self.readLocked { () throws(UnionError) -> ReadResult in
            let node = try self.resolve(h)
            if node.isDirectory { throw .isDirectory }
            guard node.type == .regular else { throw .invalid("not a regular file") }
            guard Self.mayRead(node.dataStat, cred) else { throw .accessDenied }
            let loc = node.indexed ?? node.top
            let fd = try self.readDescriptor(node)
            let want = Self.readableCount(buffer.count, at: offset)
            if NoWaiting.isActive {
                // Data not all in the page cache would be read from the disk.
                guard let cached = try self.readFromPageCache(node, fd, offset: offset, into: buffer) else {
                    throw NoWaiting.refuse()
                }
                return cached
            }
            var got = 0
            while got < want {
                let bytes = try Sys.retry("pread", loc.pathString) {
                    pread(fd.raw, buffer.baseAddress! + got, want - got, off_t(offset) + off_t(got))
                }
                if bytes == 0 { break }
                got += bytes
            }
            if got > 0 { self.readAhead(fd, fileid: node.fileid, offset: offset, count: got) }
            return try self.readResult(node, fd, offset: offset, count: got)
        }
    }

    /// Readahead state lives in an open file. READs of one file share a kept descriptor (`readDescriptor`), but only
    /// while its node stays cached, and they come from several pool threads at once, a little out of order: the
    /// kernel may take them for a random reader's and read nothing ahead, so each READ of a cold file would wait for
    /// the disk. A READ that continues a sequential reader asks the kernel to read ahead of it, as its own sequential
    /// readahead would, far enough for the READs a client keeps in flight (`ReadProgress.window`).
    func readAhead(_ fd: FD, fileid: UInt64, offset: UInt64, count: Int) {
        guard let ahead = self.noteReadEnd(fileid: fileid, offset: offset, count: count) else { return }
        // A caller that must not wait (`NoWaiting`) asks on the read-ahead queue: the advice may wait for the disk.
        if NoWaiting.isActive { return Self.readAheadLater(fd, ahead) }
        _ = posix_fadvise(fd.raw, off_t(clamping: ahead.lowerBound), off_t(clamping: ahead.count), POSIX_FADV_WILLNEED)
    }

    /// Records where a READ of `fileid` ended; returns the stretch to read ahead of it, if any (see `ReadProgress`).
    func noteReadEnd(fileid: UInt64, offset: UInt64, count: Int) -> Range<UInt64>? {
        self.readEnds.withLock { ends -> Range<UInt64>? in
            var progress = ends.value(for: fileid) ?? ReadProgress()
            let ahead = progress.note(offset: offset, count: count)
            ends.set(progress, for: fileid)
            return ahead
        }
    }

    /// Whether a READ at `offset` continues a sequential reader whose READs so far ended at `lastEnd`: it starts
    /// within eight READs of that end, either side.
    static func continuesSequentially(offset: UInt64, count: Int, lastEnd: UInt64?) -> Bool {
        guard let last = lastEnd, count > 0 else { return false }
        let window = UInt64(count) &* 8
        return offset <= last &+ window && offset &+ window >= last
    }

    /// A page of the merged listing of `dir` after `cookie` (0: from the start), for READDIR and READDIRPLUS.
    /// Entries are taken while `wants(nameLength)` answers true (the caller's budget, in its own units).
    /// - Parameters:
    ///   - withObjects: give each entry its handle and attributes (one stat each, in the layer the listing found it).
    ///   - withParent: give the parent directory (for "..").
    /// - Throws: `.notDirectory`, `.accessDenied` without read permission on `dir`, `.stale`.
    public func listDirectory(
        _ dir: ObjectHandle, after cookie: UInt64, withObjects: Bool, withParent: Bool, as cred: Credentials,
        while wants: (_ nameLength: Int) -> Bool
    ) throws(UnionError) -> DirectoryPage {
        try self.readLocked { () throws(UnionError) -> DirectoryPage in
            // Read before anything is looked at: objects found from here on are kept as of these generations.
            let generation = self.attributeGeneration.load(ordering: .acquiring)
            var directory = try self.resolveDirectory(dir)
            try Permission.require(directory.top.st, cred, Permission.read)
            let maySearch = Permission.allows(directory.top.st, cred, Permission.exec)
            let (listing, didRead) = try self.listing(directory)
            // The directory's attributes after the listing when it was read (that may have set its atime, which only
            // its own entry in its parent's listing shows); a cached listing read nothing, and `directory` was stat'ed just
            // now, when resolved.
            if didRead, let st = try Self.restat(directory.top), st.st_ino == directory.top.st.st_ino {
                if st.st_atim.tv_sec != directory.top.st.st_atim.tv_sec
                    || st.st_atim.tv_nsec != directory.top.st.st_atim.tv_nsec
                {
                    self.directoryAtimeGeneration.add(1, ordering: .releasing)
                }
                directory.top.st = st
            }
            // After this directory's own move (so it does not outdate the subdirectories this page finds), before any
            // entry is looked at.
            let directoryAtimes = self.directoryAtimeGeneration.load(ordering: .acquiring)
            let known = listing.objectsGeneration == generation && listing.objects.count == listing.entries.count
            let all = listing.entries
            var lo = 0
            var hi = all.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if all[mid].cookie <= cookie { lo = mid + 1 } else { hi = mid }
            }
            let withObjects = withObjects && maySearch
            var entries: [DirectoryEntry] = []
            entries.reserveCapacity(min(all.count - lo, 512))
            // What this page found, for the listing's cache; made only once an entry had to be looked up.
            var found: [ListedObject] = []
            var computed = false
            var index = lo
            while index < all.count, wants(all[index].name.count) {
                var object: FoundObject?
                if withObjects {
                    var cached = false
                    if known {
                        switch listing.objects[index] {
                        case .found(let cachedObject, let atimes)
                        where cachedObject.attributes.type != .directory || atimes == directoryAtimes:
                            object = cachedObject
                            cached = true
                        case .absent: cached = true
                        case .found, .unknown: break
                        }
                    }
                    if !cached {
                        if !computed {
                            computed = true
                            found.reserveCapacity(entries.capacity)
                            for entry in entries {
                                found.append(
                                    entry.object.map { .found($0, directoryAtimes: directoryAtimes) } ?? .absent)
                            }
                        }
                        object = try self.listedObject(directory, all[index], listing.tops[index])
                    }
                    if computed {
                        found.append(object.map { .found($0, directoryAtimes: directoryAtimes) } ?? .absent)
                    }
                }
                let entry = all[index]
                entries.append(
                    DirectoryEntry(name: entry.name, fileid: entry.fileid, cookie: entry.cookie, object: object))
                index += 1
            }
            if computed {
                let current = self.attributeGeneration.load(ordering: .acquiring)
                self.keepObjects(directory.fileid, from: lo, found, generation: generation, current: current)
            }
            var parent: FoundObject?
            if withParent && maySearch {
                parent = self.found(try self.resolve(self.handle(fileid: directory.parentFileid)))
            }
            return DirectoryPage(
                directory: FoundObject(handle: dir, attributes: self.attributes(directory)), parent: parent,
                entries: entries, isComplete: index == all.count)
        }
    }

    func found(_ n: Node) -> FoundObject {
        FoundObject(handle: self.handle(n), attributes: self.attributes(n))
    }

    /// The object a cached listing entry names, from one stat in the layer the listing found it in; a full lookup
    /// when that is not conclusive (the entry changed, or a hard link whose other names must be recorded).
    func listedObject(_ dir: Node, _ entry: ListingEntry, _ top: ListedTop) throws(UnionError) -> FoundObject? {
        self.stats.listedObjectLookups.add(1, ordering: .relaxed)
        if let layerDir = dir.dirs.first(where: { $0.layer == top.layer }), let dfd = layerDir.dir,
            let st = try Files.statAt(dfd, entry.name, path: Names.join(layerDir.path, entry.name).displayString),
            UInt64(st.st_ino) == top.ino, st.isDirectory || st.st_nlink <= 1
        {
            let loc = Location(layer: layerDir.layer, path: [], parent: dfd, name: entry.name, dir: nil, st: st)
            let identity = st.isDirectory ? nil : self.identities.identity(entry.fileid)
            let node = Node(
                fileid: entry.fileid, parentFileid: dir.fileid, name: entry.name, top: loc, dirs: [], lowerPath: [],
                indexed: try self.indexedCopy(of: loc, identity: identity))
            return FoundObject(
                handle: self.handle(fileid: entry.fileid), attributes: self.attributes(node, identity: identity))
        }
        do {
            guard let child = try self.child(of: dir, entry.name) else { return nil }
            return self.found(child)
        } catch {
            switch error {
            case .noEntry, .notDirectory, .stale: return nil
            default: throw error
            }
        }
    }
}
