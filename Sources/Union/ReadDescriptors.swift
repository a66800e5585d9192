import Glibc

/// The descriptor READ opened a cached file's data with, and which file that is: the layer and the inode the
/// descriptor itself reported when it was opened. While the descriptor is open its inode cannot be freed, so no other
/// file on that device can carry the same inode number; a READ whose freshly resolved data location shows that
/// layer, device and inode therefore reads the very file the descriptor holds, whatever happened in between (a
/// rename over the name, a copy-up, a change made outside the server: each shows another inode and opens anew).
struct ReadDescriptor: Sendable {
    var layer: Int
    var device: UInt64
    var inode: UInt64
    var fd: FD

    func holds(_ location: Location) -> Bool {
        self.layer == location.layer && self.device == UInt64(location.st.st_dev)
            && self.inode == UInt64(location.st.st_ino)
    }
}

extension UnionNamespace {
    /// A read-only descriptor of the data of `node` as just resolved: the one kept with its cached node when it holds
    /// that file, else one opened now (`openat` with O_NOFOLLOW relative to the layer's directory, as every open) and
    /// kept with the cached node. Data writes, truncations included, change the inode in place, so a kept descriptor
    /// reads them; every change that moves, replaces or copies up the object evicts its node, and the descriptor
    /// with it (a removed file's blocks are not held open).
    func readDescriptor(_ node: Node) throws(UnionError) -> FD {
        let location = node.indexed ?? node.top
        if let kept = node.reader, kept.holds(location) { return kept.fd }
        let fd = try self.openData(location, O_RDONLY)
        self.stats.readDescriptorsOpened.add(1, ordering: .relaxed)
        let st = try Files.fstat(fd, path: location.pathString)
        let opened = ReadDescriptor(
            layer: location.layer, device: UInt64(st.st_dev), inode: UInt64(st.st_ino), fd: fd)
        // Kept only when it is the file the resolution saw (a rename between the stat and the open gives another),
        // with a node still cached that describes that file (an evicted node's descriptor would outlive the change
        // that evicted it).
        guard opened.holds(location) else { return fd }
        self.nodeCache.withLock { cache in
            guard var cached = cache.get(node.fileid), opened.holds(cached.indexed ?? cached.top) else { return }
            cached.reader = opened
            cache.put(cached)
        }
        return fd
    }
}

extension UnionNamespace {
    /// READ from the page cache alone, for a caller that must not block (an event loop): nil unless the namespace
    /// lock is free at once, the object is in the node cache with its data descriptor kept (`readDescriptor`; the
    /// first READ of a file opens it on the pool), the caller may read it, and every byte asked for is in the page
    /// cache (`Sys.preadWithoutWaiting`). Then the answer is the one `read(_:offset:into:as:)` gives. A nil answer
    /// says nothing, and `buffer` may hold part of the data: ask `read`, which reads the range again.
    public func readIfCached(
        _ h: ObjectHandle, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer, as cred: Credentials
    ) -> ReadResult? {
        self.namespaceLock.withReadLockIfFree { () -> ReadResult? in
            guard let node = self.cachedNodeIfValid(h), node.type == .regular, Self.mayRead(node.dataStat, cred) else {
                return nil
            }
            let location = node.indexed ?? node.top
            guard let kept = node.reader, kept.holds(location) else { return nil }
            return try? self.readFromPageCache(node, kept.fd, offset: offset, into: buffer)
        }
    }

    /// READ of `node` through `fd` from the page cache alone (`Sys.preadWithoutWaiting`): nil when a byte asked for is
    /// not there (counted in `readsNotCached`; `buffer` may then hold part of the data). Read-ahead is asked for on its
    /// own queue. For callers that must not wait: `readIfCached`, and `read` inside `NoWaiting.attempt`.
    func readFromPageCache(
        _ node: Node, _ fd: FD, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer
    ) throws(UnionError) -> ReadResult? {
        let want = Self.readableCount(buffer.count, at: offset)
        guard
            let got = Sys.preadWithoutWaiting(
                fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: offset)
        else {
            self.stats.readsNotCached.add(1, ordering: .relaxed)
            return nil
        }
        if got > 0, let ahead = self.noteReadEnd(fileid: node.fileid, offset: offset, count: got) {
            Self.readAheadLater(fd, ahead)
        }
        return try self.readResult(node, fd, offset: offset, count: got)
    }

    /// The owner may always read (knfsd's owner override), and execute permission allows reading (a client executing
    /// a binary reads it).
    static func mayRead(_ st: stat, _ cred: Credentials) -> Bool {
        cred.uid == st.st_uid || Permission.allows(st, cred, Permission.read)
            || Permission.allows(st, cred, Permission.exec)
    }

    /// How many of `count` bytes at `offset` a READ asks for: none when the range would end past the largest offset a
    /// file can have (`pread` would fail with EINVAL; the READ answers zero bytes and EOF, as knfsd does).
    static func readableCount(_ count: Int, at offset: UInt64) -> Int {
        count > 0 && offset <= UInt64(Int64.max) - UInt64(count) ? count : 0
    }

    /// The reply of a READ of `node` that read `count` bytes at `offset` through `fd`: the attributes after the read
    /// (size and atime as the data was read), EOF when the read reached the size.
    func readResult(_ node: Node, _ fd: FD, offset: UInt64, count: Int) throws(UnionError) -> ReadResult {
        let location = node.indexed ?? node.top
        let after = try Files.fstat(fd, path: location.pathString)
        let size = UInt64(clamping: after.st_size)
        return ReadResult(
            count: count, isEOF: offset &+ UInt64(count) >= size, attributes: self.attributes(node, after: after))
    }

    /// `node`'s attributes with `after` (an fstat of its data taken at a READ) as its data's status; a READ that moved
    /// the access time also ages listings' attributes, which show the old one.
    func attributes(_ node: Node, after: stat) -> Attributes {
        var node = node
        let location = node.indexed ?? node.top
        if after.st_atim.tv_sec != location.st.st_atim.tv_sec || after.st_atim.tv_nsec != location.st.st_atim.tv_nsec {
            self.attributeGeneration.add(1, ordering: .releasing)
        }
        if node.indexed != nil { node.indexed?.st = after } else { node.top.st = after }
        return self.attributes(node)
    }
}

/// A READ answered as a range of the file's data rather than bytes: a server sends the range from the file itself
/// (sendfile), so the data is not copied through its memory. The descriptor is a duplicate, the caller's to close
/// once the bytes are sent; the range is the one the file held when this was taken (`count` may be below the count
/// asked for at the end of the file), with the READ's EOF and the attributes after it.
public struct ReadRange: Sendable {
    /// A read-only descriptor of the file's data, owned by the caller (close it).
    public var descriptor: CInt
    public var offset: UInt64
    public var count: Int
    public var isEOF: Bool
    public var attributes: Attributes
}

extension UnionNamespace {
    /// READ as a range to send from the file (`ReadRange`), when every byte of it is in the page cache (sending it
    /// then reads no disk, on whatever thread sends it) and sending it does not move the file's access time (so the
    /// attributes returned are those after the read, as `read` returns them). nil otherwise, and for a range that
    /// holds no byte: `read` answers those. Refusals and errors are `read`'s.
    public func readRange(
        _ h: ObjectHandle, offset: UInt64, count: Int, as cred: Credentials
    ) throws(UnionError) -> ReadRange? {
        try self.readLocked { () throws(UnionError) -> ReadRange? in
            let node = try self.resolve(h)
            if node.isDirectory { throw .isDirectory }
            guard node.type == .regular else { throw .invalid("not a regular file") }
            guard Self.mayRead(node.dataStat, cred) else { throw .accessDenied }
            let fd = try self.readDescriptor(node)
            guard let range = self.cachedRange(node, fd, offset: offset, count: count) else {
                // `read` would read the disk.
                if NoWaiting.isActive { throw NoWaiting.refuse() }
                return nil
            }
            self.readAhead(fd, fileid: node.fileid, offset: offset, count: range.count)
            return range
        }
    }

    /// `readRange` for a caller that must not block (an event loop), with the conditions of `readIfCached`: nil
    /// unless the namespace lock is free at once and the object is cached with its data descriptor kept.
    public func readRangeIfCached(
        _ h: ObjectHandle, offset: UInt64, count: Int, as cred: Credentials
    ) -> ReadRange? {
        self.namespaceLock.withReadLockIfFree { () -> ReadRange? in
            guard let node = self.cachedNodeIfValid(h), node.type == .regular, Self.mayRead(node.dataStat, cred) else {
                return nil
            }
            guard let kept = node.reader, kept.holds(node.indexed ?? node.top),
                let range = self.cachedRange(node, kept.fd, offset: offset, count: count)
            else { return nil }
            if let ahead = self.noteReadEnd(fileid: node.fileid, offset: offset, count: range.count) {
                Self.readAheadLater(kept.fd, ahead)
            }
            return range
        }
    }

    /// The range of `node`'s data at `offset` a READ of `count` bytes answers, with a descriptor of its own, if it holds
    /// at least one byte, all in the page cache, and sending it leaves the access time as it is.
    func cachedRange(_ node: Node, _ fd: FD, offset: UInt64, count: Int) -> ReadRange? {
        let location = node.indexed ?? node.top
        guard let st = try? Files.fstat(fd, path: location.pathString) else { return nil }
        let size = UInt64(clamping: st.st_size)
        let want = Self.readableCount(count, at: offset)
        guard want > 0, offset < size else { return nil }
        let available = min(UInt64(want), size - offset)
        guard Sys.readLeavesAccessTime(fd, st), Sys.isCached(fd, offset: offset, count: available),
            let copy = Sys.duplicate(fd)
        else { return nil }
        return ReadRange(
            descriptor: copy, offset: offset, count: Int(available), isEOF: offset &+ available >= size,
            attributes: self.attributes(node, after: st))
    }
}
