import Basics
import Glibc

// Resolved objects are cached: a file handle then costs one stat instead of a walk from the root through every layer.
// Lowers are immutable and the upper is changed only through this namespace, under the write lock, so a cached node
// stays right until a change moves or replaces what it describes; the change evicts exactly those nodes at the step
// that does it (`evictNode`: a copy-up, a removal, a rename; a directory's copy-up, removal or rename, and a change of
// merge records, empty the whole cache, since descendants describe their paths). A cached node's stat is refreshed on
// each use and its inode checked (data writes run under the read lock and change size and times).
//
// A cached regular file also keeps the descriptor READ opened its data with (`Node.reader`, ReadDescriptors.swift),
// so a sequential reader costs no open and close per call and the kernel's readahead state survives between calls.
// It goes with its node: every eviction above closes it, so a removed file's space is not held open.

/// Resolved nodes by fileid; beyond the namespace's `cachedObjects` the least recently used is forgotten.
struct NodeCache: Sendable {
    private var nodes: LRUMap<UInt64, Node>
    /// Nodes a change evicted or emptied so far (not those forgotten for capacity): whether a change that failed
    /// touched the cache (`UnionNamespace.mutate`).
    private(set) var evictions: UInt64 = 0

    init(capacity: Int) { self.nodes = LRUMap(capacity: capacity) }

    mutating func get(_ fileid: UInt64) -> Node? { self.nodes.value(for: fileid) }

    mutating func put(_ node: Node) {
        guard self.nodes.capacity > 0 else { return }
        var node = node
        // A file resolved again (a LOOKUP of its name) keeps the descriptor READ opened, while that is its data.
        if node.reader == nil, let kept = self.nodes.value(for: node.fileid)?.reader,
            kept.holds(node.indexed ?? node.top)
        {
            node.reader = kept
        }
        self.nodes.set(node, for: node.fileid)
    }

    mutating func remove(_ fileid: UInt64) {
        self.nodes.removeValue(for: fileid)
        self.evictions &+= 1
    }

    mutating func removeAll() {
        self.nodes.removeAll()
        self.evictions &+= 1
    }

    /// Nodes cached now (tests).
    var count: Int { self.nodes.count }
}

extension UnionNamespace {
    func cacheNode(_ node: Node) {
        self.nodeCache.withLock { $0.put(node) }
    }

    /// A change moved, replaced or copied up object `fileid`: its cached node is wrong now. A directory: every
    /// cached node below it describes its path through it, so all go.
    func evictNode(_ fileid: UInt64, isDirectory: Bool) {
        self.nodeCache.withLock { cache in
            if isDirectory { cache.removeAll() } else { cache.remove(fileid) }
        }
    }

    /// A cached node with fresh stats, or nil when it is not cached or no longer where it was.
    func cachedNode(_ fileid: UInt64) throws(UnionError) -> Node? {
        guard var node = self.nodeCache.withLock({ $0.get(fileid) }) else { return nil }
        guard let st = try Self.restat(node.top), st.st_ino == node.top.st.st_ino else { return nil }
        node.top.st = st
        // The copy shares `dirs` with the cached node: writing to it copies the whole array (every layer's
        // descriptors retained), which was most of a LOOKUP's own cost in a directory that had not changed. The
        // write is needed only when the stat did.
        if !node.dirs.isEmpty, !Self.sameStat(node.dirs[0].st, st) { node.dirs[0].st = st }
        if let indexed = node.indexed {
            guard let indexedStat = try Self.restat(indexed) else { return nil }
            node.indexed?.st = indexedStat
        }
        return node
    }

    /// Whether two stats are the same, byte for byte.
    static func sameStat(_ a: stat, _ b: stat) -> Bool {
        withUnsafeBytes(of: a) { a in
            withUnsafeBytes(of: b) { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
        }
    }

    static func restat(_ location: Location) throws(UnionError) -> stat? {
        if let dir = location.dir { return try Files.fstat(dir, path: location.pathString) }
        guard let parent = location.parent else { return nil }
        return try Files.statAt(parent, location.name, path: location.pathString)
    }
}
