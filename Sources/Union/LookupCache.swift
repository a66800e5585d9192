import Basics

// LOOKUP results by directory and name: what a name gave (a fileid, or no such name) is kept, so a repeated LOOKUP
// costs the object's refresh from the node cache (one stat) instead of a stat per layer, the whiteout checks and the
// identity lookups; a name a boot looks for and does not find (library and configuration search paths) costs no
// system call at all.
//
// Exact, without an invalidation at each change site: which object a name shows changes only in a namespace change,
// and every namespace change runs in `mutate`, under the write lock, which moves `namesGeneration` before it lets go.
// An entry is answered only at the generation it was taken at, so the first LOOKUP after any change finds the cache
// empty. Lookups run under the read lock, so the generation cannot move while one is answered.
//
// A found name is answered only while the node cache still holds its object (and the refresh finds the same inode
// there): the cache holds fileids, never descriptors, so it does not widen the node cache's bound on them.

/// Names looked up in directories, with what each gave; see above.
struct LookupCache: Sendable {
    struct Key: Hashable, Sendable {
        var directory: UInt64
        var name: [UInt8]
    }

    /// What a name gave: the object's fileid, or nil when the directory has no such name.
    private var entries: LRUMap<Key, UInt64?>
    /// The namespace's `namesGeneration` the entries were taken at.
    private var generation: UInt64 = 0

    init(capacity: Int) { self.entries = LRUMap(capacity: capacity) }

    /// What `name` in `directory` gave at `generation`: `.some(nil)` for no such name, nil when unknown.
    mutating func get(_ directory: UInt64, _ name: [UInt8], generation: UInt64) -> UInt64?? {
        guard generation == self.generation else { return nil }
        return self.entries.value(for: Key(directory: directory, name: name))
    }

    mutating func put(_ directory: UInt64, _ name: [UInt8], _ fileid: UInt64?, generation: UInt64) {
        guard self.entries.capacity > 0 else { return }
        if generation != self.generation {
            self.entries.removeAll()
            self.generation = generation
        }
        self.entries.set(fileid, for: Key(directory: directory, name: name))
    }
}

extension UnionNamespace {
    /// What the lookup cache says of `name` in directory `dir` now: nil when it does not know (or the object it named
    /// has left the node cache), `.some(nil)` for no such name. Caller holds the namespace read lock.
    private func cachedLookup(_ dir: Node, _ name: [UInt8], generation: UInt64) throws(UnionError) -> Node?? {
        guard let known = self.lookups.withLock({ $0.get(dir.fileid, name, generation: generation) }) else {
            return nil
        }
        guard let fileid = known else {
            self.stats.lookupCacheHits.add(1, ordering: .relaxed)
            return .some(nil)
        }
        guard let child = try self.cachedNode(fileid) else { return nil }
        self.stats.lookupCacheHits.add(1, ordering: .relaxed)
        return child
    }

    /// The child `name` of directory `dir` for a LOOKUP, from the lookup cache when it knows the name; nil when there is
    /// no such name. Caller holds the namespace read lock.
    func lookupChild(of dir: Node, _ name: [UInt8]) throws(UnionError) -> Node? {
        let generation = self.namesGeneration.load(ordering: .acquiring)
        if let known = try self.cachedLookup(dir, name, generation: generation) { return known }
        let child = try self.child(of: dir, name)
        if let child { self.cacheNode(child) }
        self.lookups.withLock { $0.put(dir.fileid, name, child?.fileid, generation: generation) }
        return child
    }

    /// LOOKUP from the caches alone, for a caller that must not block (an event loop), as `getattrIfCached`: nil
    /// unless the namespace lock is free at once, the directory's node is cached and may be searched by `cred`, and
    /// the lookup cache knows `name` (and, for a found name, the node cache its object). The system calls are the
    /// two nodes' refreshes. "." and "..", refusals and errors are left to `lookupForReply`, which a nil asks for.
    public func lookupIfCached(_ dir: ObjectHandle, _ name: [UInt8], as cred: Credentials) -> DirectoryLookup? {
        guard name != [0x2e], name != [0x2e, 0x2e], (try? Names.validate(name)) != nil else { return nil }
        return self.namespaceLock.withReadLockIfFree { () -> DirectoryLookup? in
            guard let dirNode = self.cachedNodeIfValid(dir), dirNode.isDirectory,
                Permission.allows(dirNode.top.st, cred, Permission.exec),
                let known = try? self.cachedLookup(
                    dirNode, name, generation: self.namesGeneration.load(ordering: .acquiring))
            else { return nil }
            let directory = self.attributes(dirNode)
            guard let child = known else { return DirectoryLookup(directory: directory, found: .failure(.noEntry)) }
            return DirectoryLookup(directory: directory, found: .success(self.found(child)))
        }
    }
}
