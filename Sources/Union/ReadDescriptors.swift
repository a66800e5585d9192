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

    func holds(_ loc: Location) -> Bool {
        self.layer == loc.layer && self.device == UInt64(loc.st.st_dev) && self.inode == UInt64(loc.st.st_ino)
    }
}

extension UnionNamespace {
    /// A read-only descriptor of `loc`, the data of cached object `fileid` as just resolved: the kept one when it
    /// holds that file, else one opened now (the same `openat` with O_NOFOLLOW relative to the layer's directory) and
    /// kept while the object's node stays cached. Data writes, truncations included, change the inode in place, so
    /// the kept descriptor reads them.
    func readDescriptor(_ fileid: UInt64, _ loc: Location) throws(UnionError) -> FD {
        if let kept = self.nodeCache.withLock({ $0.readers[fileid] }), kept.holds(loc) {
            return kept.fd
        }
        let fd = try self.openData(loc, O_RDONLY)
        self.stats.readDescriptorsOpened.add(1, ordering: .relaxed)
        let st = try Files.fstat(fd, path: loc.pathString)
        let opened = ReadDescriptor(layer: loc.layer, device: UInt64(st.st_dev), inode: UInt64(st.st_ino), fd: fd)
        // Kept only when it is the file the resolution saw (a rename between the stat and the open gives another)
        // and the node is still cached (an evicted node's descriptor would be kept past the change that evicted it).
        if opened.holds(loc) {
            let replaced = self.nodeCache.withLock { c -> ReadDescriptor? in
                guard c.items[fileid] != nil else { return nil }
                return c.readers.updateValue(opened, forKey: fileid)
            }
            withExtendedLifetime(replaced) {}  // closed here, outside the lock
        }
        return fd
    }
}
