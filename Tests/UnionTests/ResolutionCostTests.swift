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
}
