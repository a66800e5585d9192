import Glibc
import Synchronization

// Resolved objects are cached: a file handle then costs one stat instead of a walk from the root through every layer.
// Lowers are immutable and the upper is changed only through this namespace, under the write lock, so a cached node
// stays right until a change moves or replaces what it describes; the change evicts exactly those nodes at the step
// that does it (`evictNode`: a copy-up, a removal, a rename; a directory's copy-up, removal or rename, and a change of
// merge records, empty the whole cache, since descendants describe their paths). A cached node's stat is refreshed on
// each use and its inode checked (data writes run under the read lock and change size and times).
//
// A cached regular file may also keep the descriptor READ opened its data with (`readers`, ReadDescriptors.swift), so
// a sequential reader costs no open and close per call and the kernel's readahead state survives between calls. It
// goes with its node: every eviction above drops it, so a removed file's space is not held open.

struct NodeCache: Sendable {
    var capacity: Int
    var items: [UInt64: (node: Node, tick: UInt64)] = [:]
    var tick: UInt64 = 0
    /// Open data descriptors of cached files, for READ (only for fileids in `items`).
    var readers: [UInt64: ReadDescriptor] = [:]

    mutating func get(_ fileid: UInt64) -> Node? {
        guard let v = self.items[fileid] else { return nil }
        self.tick &+= 1
        self.items[fileid] = (v.node, self.tick)
        return v.node
    }

    init(capacity: Int) { self.capacity = capacity }

    mutating func put(_ node: Node) {
        guard self.capacity > 0 else { return }
        self.tick &+= 1
        self.items[node.fileid] = (node, self.tick)
        if self.items.count > self.capacity {
            // Evict the older half at once: amortised O(1) per insert.
            let cutoff = self.items.values.map(\.tick).sorted()[self.items.count / 2]
            self.items = self.items.filter { $0.value.tick >= cutoff }
            self.readers = self.readers.filter { self.items[$0.key] != nil }
        }
    }

    mutating func removeAll() {
        self.items = [:]
        self.readers = [:]
    }
}

extension UnionNamespace {
    func cacheNode(_ n: Node) {
        self.nodeCache.withLock { $0.put(n) }
    }

    /// A change moved, replaced or copied up object `fileid`: its cached node is wrong now. A directory: every
    /// cached node below it describes its path through it, so all go.
    func evictNode(_ fileid: UInt64, isDirectory: Bool) {
        // The dropped descriptors are closed here, after the lock (the last close of a removed file frees its blocks).
        let dropped = self.nodeCache.withLock { c -> [UInt64: ReadDescriptor] in
            if isDirectory {
                let readers = c.readers
                c.removeAll()
                return readers
            }
            c.items[fileid] = nil
            return c.readers.removeValue(forKey: fileid).map { [fileid: $0] } ?? [:]
        }
        withExtendedLifetime(dropped) {}
    }

    /// A cached node with fresh stats, or nil when it is not cached or no longer where it was.
    func cachedNode(_ fileid: UInt64) throws(UnionError) -> Node? {
        guard var n = self.nodeCache.withLock({ $0.get(fileid) }) else { return nil }
        guard let st = try Self.restat(n.top), st.st_ino == n.top.st.st_ino else { return nil }
        n.top.st = st
        if !n.dirs.isEmpty { n.dirs[0].st = st }
        if let ix = n.indexed {
            guard let ist = try Self.restat(ix) else { return nil }
            n.indexed?.st = ist
        }
        return n
    }

    static func restat(_ loc: Location) throws(UnionError) -> stat? {
        if let d = loc.dir { return try Files.fstat(d, path: loc.pathString) }
        guard let p = loc.parent else { return nil }
        return try Files.statAt(p, loc.name, path: loc.pathString)
    }
}
