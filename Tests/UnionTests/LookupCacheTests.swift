import Foundation
import Glibc
import Testing

@testable import Union

/// The LOOKUP cache: a repeated LOOKUP is answered from it, and every change that may alter what a name shows makes
/// the next LOOKUP look again (with the answer a fresh namespace gives).
@Suite struct LookupCacheTests {
    @Test func aRepeatedLookupIsCachedAndEveryChangeIsSeen() throws {
        let f = Fixture(in: "/dev/shm")
        f.file(f.lower(1) + "/dir/low", "in the bottom layer")
        f.file(f.lower(0) + "/dir/high", "in the top lower layer")
        let u = try f.open(lowers: 2)
        defer { u.close() }
        let dir = try u.h("dir")
        func hits() -> UInt64 { u.stats.lookupCacheHits.load(ordering: .relaxed) }
        func find(_ name: String) -> Result<FoundObject, UnionError>? {
            try? u.lookupForReply(dir, b(name), as: root).found
        }
        func handle(_ name: String) -> ObjectHandle? {
            if case .success(let found)? = find(name) { return found.handle }
            return nil
        }
        func isMissing(_ name: String) -> Bool {
            if case .failure(.noEntry)? = find(name) { return true }
            return false
        }

        let low = try #require(handle("low"))
        let before = hits()
        #expect(handle("low") == low, "the same object again")
        #expect(hits() == before + 1, "from the cache")
        let found = try u.lookupForReply(dir, b("low"), as: root).found.get()
        #expect(found.attributes == (try u.getattr(low)), "with GETATTR's attributes")

        // A name that is not there: cached as missing, and seen once made.
        #expect(isMissing("new"))
        let missing = hits()
        #expect(isMissing("new"))
        #expect(hits() == missing + 1, "a missing name is cached too")
        try u.mkfile("dir", "new", "fresh")
        #expect(handle("new") != nil, "made after it was cached as missing")

        // Removed, renamed over, renamed away: each seen by the next LOOKUP.
        try u.remove(in: dir, b("high"), as: root)
        #expect(isMissing("high"))
        try u.rename(from: dir, b("new"), to: dir, b("low"), as: root)
        let renamed = try #require(handle("low"))
        #expect(renamed != low, "the name shows the renamed object now")
        #expect(isMissing("new"))
        let again = hits()
        #expect(handle("low") == renamed)
        #expect(hits() == again + 1, "cached again after the change")

        // The cache never answers for another directory, nor outlives its object in the node cache.
        #expect(try u.lookupForReply(u.rootHandle, b("low"), as: root).found.isFailure)
        u.nodeCache.withLock { $0.removeAll() }
        #expect(handle("low") == renamed, "looked up again once its node was forgotten")
    }

    /// A change that failed after a step moves the generation too (it may have undone part of what it did). One
    /// refused before its first step does not (`ResolutionCostTests.aRefusedChangeKeepsTheCachedNodes`).
    @Test func aChangeThatFailedAfterAStepEmptiesTheCache() throws {
        let f = Fixture(in: "/dev/shm")
        f.file(f.lower(0) + "/dir/file", "x")
        let u = try f.open()
        defer { u.close() }
        let dir = try u.h("dir")
        _ = try u.lookupForReply(dir, b("file"), as: root).found.get()
        let generation = u.namesGeneration.load(ordering: .relaxed)
        u.hooks?.crashAt.withLock { $0 = "create.afterBuild" }
        #expect(throws: UnionError.simulatedCrash(point: "create.afterBuild")) {
            try u.create(in: dir, b("other"), mode: .guarded, attributes: SetAttributes(), as: root)
        }
        #expect(u.namesGeneration.load(ordering: .relaxed) > generation)
        let before = u.stats.lookupCacheHits.load(ordering: .relaxed)
        _ = try u.lookupForReply(dir, b("file"), as: root).found.get()
        #expect(u.stats.lookupCacheHits.load(ordering: .relaxed) == before, "looked up again")
    }
}

extension Result {
    fileprivate var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}
