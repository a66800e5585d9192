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
