import Foundation
import Glibc
import Testing

@testable import Union

/// `getattrIfCached` / `accessIfCached`: what an event loop may ask without blocking.
@Suite struct CachedAnswerTests {
    /// Answered only for a cached object with the namespace lock free at once, and then exactly
    /// what `getattr` / `accessForReply` answer.
    @Test func answersOnlyFromTheCacheAndNeverWaits() throws {
        let f = Fixture(in: "/dev/shm")
        f.file(f.lower(0) + "/dir/file", "data")
        let u = try f.open()
        defer { u.close() }
        let user = Credentials(uid: 1000, gid: 1000, groups: [])
        let (dir, _) = try u.lookup(u.rootHandle, Array("dir".utf8), as: root)
        let page = try u.listDirectory(dir, after: 0, withObjects: true, withParent: false, as: root) { _ in true }
        let listed = try #require(page.entries.first?.object?.handle)
        #expect(u.getattrIfCached(listed) == nil, "a handle from a listing: its node is not cached yet")
        let file = try u.lookupForReply(dir, Array("file".utf8), as: root).found.get().handle  // caches the node
        #expect(file == listed)
        #expect(u.getattrIfCached(file) == (try u.getattr(file)))
        let cached = try #require(u.accessIfCached(file, .all, as: user))
        let pool = try u.accessForReply(file, .all, as: user)
        #expect(cached.granted == pool.granted && cached.attributes == pool.attributes)

        // A change holds the lock: declined, not waited for.
        #expect(u.namespaceLock.tryWriteLock())
        #expect(u.getattrIfCached(file) == nil)
        #expect(u.accessIfCached(file, .all, as: user) == nil)
        u.namespaceLock.unlockWrite()
        #expect(u.getattrIfCached(file) != nil)

        // A forged tag, a closed namespace: declined.
        #expect(u.getattrIfCached(ObjectHandle(fileid: file.fileid, tag: file.tag ^ 1)) == nil)
        u.close()
        #expect(u.getattrIfCached(file) == nil)
    }

    /// A cached directory's refresh leaves its layer entries alone while its stat is unchanged (no copy of them per
    /// call) and updates them all once it changed: the top entry and the first layer's are one directory.
    @Test func aCachedDirectorysRefreshShowsItsChangeInEveryEntry() throws {
        let f = Fixture(in: "/dev/shm")
        f.file(f.lower(0) + "/keep", "x")
        let u = try f.open()
        defer { u.close() }
        let (dir, _) = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root)
        _ = try u.getattr(dir)
        let before = try #require(u.cachedNodeIfValid(dir))
        #expect(UnionNamespace.sameStat(before.top.st, before.dirs[0].st))
        let again = try #require(u.cachedNodeIfValid(dir))
        #expect(UnionNamespace.sameStat(again.dirs[0].st, before.dirs[0].st))

        _ = try u.create(in: dir, b("f"), mode: .guarded, attributes: .init(), as: root)
        let after = try #require(u.cachedNodeIfValid(dir), "a CREATE in it keeps the directory's node")
        #expect(!UnionNamespace.sameStat(after.top.st, before.top.st), "a new entry changes the directory")
        #expect(UnionNamespace.sameStat(after.dirs[0].st, after.top.st))
        #expect(u.getattrIfCached(dir) == (try u.getattr(dir)))
    }

    @Test func statsCompareByteForByte() {
        var a = stat()
        a.st_ino = 7
        var b = a
        #expect(UnionNamespace.sameStat(a, b))
        b.st_mtim.tv_nsec = 1
        #expect(!UnionNamespace.sameStat(a, b))
    }
}

/// Which READs count as sequential for the readahead hint (`UnionNamespace.readAhead`).
@Suite struct ReadAheadTests {
    @Test func sequentialReadersAreToldFromRandomOnes() {
        let mib = 1 << 20
        #expect(!UnionNamespace.continuesSequentially(offset: 0, count: mib, lastEnd: nil), "a file's first READ")
        #expect(UnionNamespace.continuesSequentially(offset: 4 << 20, count: mib, lastEnd: 4 << 20), "right after")
        #expect(
            UnionNamespace.continuesSequentially(offset: 2 << 20, count: mib, lastEnd: 5 << 20), "in flight together")
        #expect(!UnionNamespace.continuesSequentially(offset: 100 << 20, count: mib, lastEnd: 4 << 20), "a jump ahead")
        #expect(!UnionNamespace.continuesSequentially(offset: 0, count: mib, lastEnd: 100 << 20), "back to the start")
        #expect(!UnionNamespace.continuesSequentially(offset: 4096, count: 0, lastEnd: 4096), "an empty READ")
    }

    /// A sequential reader is read ahead of by a whole window at first, then by what it consumed, once half the
    /// window is used; READs answered out of order, a jump and a restart do not ask for the same data twice. (Cold
    /// sequential READs used to ask for four READs ahead only, and not at all when answered from the page cache: the
    /// disk idled between stretches.)
    @Test func aSequentialReaderIsReadAheadOfByAWindow() {
        let mib = 1 << 20
        let m = UInt64(mib)
        let window = ReadProgress.window(count: mib)
        #expect(window == 16 * m)
        var progress = ReadProgress()
        #expect(progress.note(offset: 0, count: mib) == nil, "a file's first READ")
        #expect(progress.note(offset: m, count: mib) == 2 * m..<2 * m + window, "the second: a whole window")
        for i in 2..<10 {
            #expect(progress.note(offset: UInt64(i) * m, count: mib) == nil, "READ \(i): over half the window ahead")
        }
        // Out of order (READ 11 before 10): the end moves to 12 MiB, the window is half used up.
        #expect(progress.note(offset: 11 * m, count: mib) == 18 * m..<28 * m)
        #expect(progress.note(offset: 10 * m, count: mib) == nil, "a late READ asks for nothing")
        #expect(progress.note(offset: 12 * m, count: mib) == nil)
        // A jump: a new reader there; it is read ahead of from its second READ.
        #expect(progress.note(offset: 200 * m, count: mib) == nil)
        #expect(progress.note(offset: 201 * m, count: mib) == 202 * m..<202 * m + window)
        // Back to the start, as a second pass does.
        #expect(progress.note(offset: 0, count: mib) == nil)
        #expect(progress.note(offset: m, count: mib) == 2 * m..<2 * m + window)
        #expect(progress.note(offset: 0, count: 0) == nil, "an empty READ")
        #expect(ReadProgress.window(count: 4096) == 16 * 4096, "small READs: sixteen of them")
    }
}

/// The handles and attributes a READDIRPLUS page keeps with its cached listing.
@Suite struct ListedObjectCacheTests {
    /// Listing a subdirectory may move its access time, which only that subdirectory's entry in
    /// its parent's listing shows: the parent's next page looks up that one entry again (and shows
    /// GETATTR's attributes for it), not every entry. Listing a tree used to make every listing
    /// cached so far look up all its entries again.
    @Test func aSubdirectoryListingRefreshesOnlyItsOwnEntry() throws {
        let f = Fixture(in: "/dev/shm")
        for i in 0..<10 { f.file(f.lower(0) + "/dir/f\(i)", "data") }
        f.file(f.lower(0) + "/dir/sub/inner", "x")
        // An access time older than the modification time: relatime sets it on the next read of the directory.
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 2_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, f.lower(0) + "/dir/sub", &times, 0) == 0)
        let u = try f.open()
        defer { u.close() }
        let dir = try u.h("dir")
        func page() throws -> DirectoryPage {
            try u.listDirectory(dir, after: 0, withObjects: true, withParent: false, as: root) { _ in true }
        }
        func lookups() -> UInt64 { u.stats.listedObjectLookups.load(ordering: .relaxed) }
        _ = try page()
        #expect(lookups() == 11, "a cold page looks up every entry")
        _ = try page()
        #expect(lookups() == 11, "a warm page none")

        let sub = try u.h("dir/sub")
        let before = try u.getattr(sub)
        _ = try u.listDirectory(sub, after: 0, withObjects: true, withParent: false, as: root) { _ in true }
        let after = try u.getattr(sub)
        let warm = try page()
        let entry = try #require(warm.entries.first { $0.name == b("sub") })
        #expect(entry.object?.attributes == after, "the subdirectory's entry is GETATTR's")
        if after.atime != before.atime {
            #expect(lookups() == 11 + 1 + 1, "the subdirectory's own listing, then its entry in the parent's")
        } else {
            #expect(lookups() == 11 + 1, "no access time moved (a noatime mount): nothing looked up again")
        }
        for e in warm.entries {
            #expect(e.object?.attributes == (try u.getattr(#require(e.object?.handle))), "\(e.name)")
        }
    }

    /// A client listing a tree lists its directories one after the other, then again. Kept for 64 directories, the
    /// listings of a tree of 100 were each evicted before their turn came again: every warm pass read every directory
    /// and stat'ed every entry (READDIRPLUS of a warm tree at 0.27–0.40× nfs-ganesha's rate). Weighed by their names,
    /// the 100 listings stay.
    @Test func aTreeOfAHundredDirectoriesStaysWarm() throws {
        let f = Fixture(in: "/dev/shm")
        for d in 0..<100 {
            for i in 0..<3 { f.file(f.lower(0) + "/tree/d\(d)/f\(i)", "") }
        }
        let u = try f.open()
        defer { u.close() }
        let dirs = try (0..<100).map { d in try u.h("tree/d\(d)") }
        func listAll() throws {
            for dir in dirs {
                let page = try u.listDirectory(dir, after: 0, withObjects: true, withParent: false, as: root) { _ in
                    true
                }
                #expect(page.entries.count == 3 && page.isComplete)
            }
        }
        func lookups() -> UInt64 { u.stats.listedObjectLookups.load(ordering: .relaxed) }
        try listAll()
        #expect(lookups() == 300, "a cold pass looks up every entry")
        try listAll()
        #expect(lookups() == 300, "a warm pass none (with room for 64 listings: 300 again)")
    }

    /// The listings kept are bounded by their names together, not by their number: past the limit the listing used
    /// longest ago goes. A listing larger than the limit by itself is kept alone (not kept, each of its pages would
    /// read the whole directory again).
    @Test func listingsAreKeptUpToTheirNamesTogether() throws {
        let f = Fixture(in: "/dev/shm")
        for d in 0..<3 {
            for i in 0..<5 { f.file(f.lower(0) + "/d\(d)/f\(i)", "") }
        }
        for i in 0..<12 { f.file(f.lower(0) + "/big/f\(i)", "") }
        let u = try f.open(cachedListingEntries: 10)
        defer { u.close() }
        func list(_ path: String) throws {
            let dir = try u.h(path)
            _ = try u.listDirectory(dir, after: 0, withObjects: true, withParent: false, as: root) { _ in true }
        }
        func lookups() -> UInt64 { u.stats.listedObjectLookups.load(ordering: .relaxed) }
        try list("d0")
        try list("d1")
        #expect(lookups() == 10)
        try list("d0")
        #expect(lookups() == 10, "two listings of five names fit")
        try list("d2")  // evicts d1, used longest ago
        try list("d0")
        #expect(lookups() == 15, "d0 stayed")
        try list("d1")
        #expect(lookups() == 20, "d1 went")
        try list("big")
        try list("big")
        #expect(lookups() == 32, "twelve names, more than the limit: kept, alone")
        try list("d0")
        #expect(lookups() == 37, "the others went for it")
    }

    /// A page's objects replace their own stretch, across the chunks they are kept in.
    @Test func listedObjectsAreReplacedAcrossChunks() {
        let size = ListedObjects.chunkSize
        var objects = ListedObjects(unknown: 2 * size + 3)
        #expect(objects.count == 2 * size + 3)
        let found = [ListedObject](repeating: .absent, count: size + 2)
        objects.replace(from: size - 1, with: found)
        func isAbsent(_ index: Int) -> Bool {
            if case .absent = objects[index] { return true }
            return false
        }
        #expect(!isAbsent(size - 2))
        #expect((size - 1..<2 * size + 1).allSatisfy(isAbsent))
        #expect(!isAbsent(2 * size + 1) && !isAbsent(2 * size + 2))
        #expect(ListedObjects(unknown: 0).count == 0)
    }
}
