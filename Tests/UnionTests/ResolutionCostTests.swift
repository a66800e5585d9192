import Testing

@testable import Union

/// Resolving a handle after a namespace change must not walk from the root (a MKDIR at depth 2,500 once cost 0.6 s
/// of server time): a change evicts only the cached nodes it moves or replaces, so the new object's parent is still
/// cached and its handle resolves in one step whatever the depth.
@Suite struct ResolutionCostTests {
    @Test func aHandleAfterAChangeResolvesFromItsCachedParent() throws {
        let f = Fixture()
        f.mkdir(f.lower(0))
        let u = try f.open()
        defer { u.close() }
        let depth = 400
        var dir = u.rootHandle
        for level in 0..<depth {
            dir = try u.mkdir(in: dir, b("d\(level)"), attributes: .init(), as: .root).0
        }
        // Each new directory's GETATTR (as a client does after MKDIR) and the next MKDIR in it: a constant number of
        // names looked up per level, not one per level above it.
        let before = u.stats.resolutionSteps.load(ordering: .relaxed)
        for level in 0..<50 {
            dir = try u.mkdir(in: dir, b("e\(level)"), attributes: .init(), as: .root).0
            _ = try u.getattr(dir)
        }
        let steps = u.stats.resolutionSteps.load(ordering: .relaxed) - before
        #expect(steps <= 2 * 50, "\(steps) names looked up to resolve 50 new directories at depth \(depth)+")
    }

    /// A change refused before its first step (MKDIR of a name that exists, REMOVE or RMDIR of one that does not: what
    /// `mkdir -p` and `rm -f` send; a recorded diskless boot answers 9 of its 11 MKDIRs with EXIST) changed nothing, so
    /// it keeps the cached nodes: the next call on a deep handle resolves in a step or two. Each refusal used to empty
    /// the cache, and that call walked every name from the root again.
    @Test func aRefusedChangeKeepsTheCachedNodes() throws {
        let f = Fixture()
        f.mkdir(f.lower(0))
        let u = try f.open(cachedObjects: 4096)
        defer { u.close() }
        let depth = 300
        var dir = u.rootHandle
        for level in 0..<depth {
            dir = try u.mkdir(in: dir, b("d\(level)"), attributes: .init(), as: .root).0
        }
        let file = try u.create(in: dir, b("f"), mode: .guarded, attributes: .init(), as: .root).0
        let cached = u.nodeCache.withLock { $0.count }
        #expect(cached > depth)
        let refusals: [(String, () throws(UnionError) -> Void, UnionError)] = [
            (
                "MKDIR of an existing name",
                { () throws(UnionError) in _ = try u.mkdir(in: dir, b("f"), attributes: .init(), as: .root) }, .exists
            ),
            (
                "REMOVE of a missing name", { () throws(UnionError) in try u.remove(in: dir, b("missing"), as: .root) },
                .noEntry
            ),
            ("RMDIR of a file", { () throws(UnionError) in try u.rmdir(in: dir, b("f"), as: .root) }, .notDirectory),
            (
                "REMOVE by someone without write permission",
                { () throws(UnionError) in try u.remove(in: dir, b("f"), as: alice) }, .accessDenied
            ),
        ]
        for (what, change, refusal) in refusals {
            #expect(throws: refusal, "\(what)") { try change() }
            #expect(u.nodeCache.withLock { $0.count } >= cached, "\(what) emptied the node cache")
            let before = u.stats.resolutionSteps.load(ordering: .relaxed)
            _ = try u.getattr(file)
            let steps = u.stats.resolutionSteps.load(ordering: .relaxed) - before
            #expect(steps <= 2, "\(what): \(steps) names looked up to resolve a file at depth \(depth)")
            // Nor did it move the generations: the name's LOOKUP is still answered from the lookup cache.
            _ = try u.lookupForReply(dir, b("f"), as: .root)
            let hits = u.stats.lookupCacheHits.load(ordering: .relaxed)
            #expect(throws: refusal, "\(what)") { try change() }
            #expect(try u.lookupForReply(dir, b("f"), as: .root).found.get().handle == file)
            #expect(u.stats.lookupCacheHits.load(ordering: .relaxed) == hits + 1, "\(what) emptied the lookup cache")
        }
    }

    /// A change that failed after a step still empties the cache: it may have undone what cached nodes describe.
    @Test func aChangeThatFailedAfterAStepEmptiesTheCache() throws {
        let f = Fixture()
        f.mkdir(f.lower(0))
        let u = try f.open()
        defer { u.close() }
        let dir = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: .root).0
        _ = try u.create(in: dir, b("a"), mode: .guarded, attributes: .init(), as: .root)
        #expect(u.nodeCache.withLock { $0.count } > 1)
        u.hooks?.crashAt.withLock { $0 = "remove.afterUnlink" }
        #expect(throws: UnionError.simulatedCrash(point: "remove.afterUnlink")) {
            try u.remove(in: dir, b("a"), as: .root)
        }
        #expect(u.nodeCache.withLock { $0.count } == 0)
        u.identities.commits.abandon()
    }
}
