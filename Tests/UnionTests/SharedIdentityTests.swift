import Foundation
import GRDB
import Glibc
import Logging
import Testing

@testable import Union

/// Lower identities shared by the clients of one image (`SharedIdentities`): a client resolving a lower object writes
/// nothing, and every guarantee of a client's own identities holds (handles survive a restart, copy-up and rename;
/// one client's handle never resolves in another's namespace; a replied handle survives a crash).
@Suite struct SharedIdentityTests {
    let f = Fixture()
    var shared: String { self.f.base + "/shared" }
    func client(_ n: Int) -> String { self.f.base + "/client\(n)" }

    init() {
        self.f.file(self.f.lower(0) + "/etc/hostname", "image")
        self.f.file(self.f.lower(0) + "/usr/bin/sh", "sh")
        self.f.mkdir(self.f.lower(0) + "/var/log")
    }

    func openShared(version: Int = 1) throws -> SharedIdentities {
        try SharedIdentities(
            directory: self.shared, lowers: [self.f.lower(0)], version: version, logger: Logger(label: "test"))
    }

    func open(_ n: Int, _ store: SharedIdentities?) throws -> UnionNamespace {
        try UnionNamespace(
            upper: self.client(n), lowers: [self.f.lower(0)], stateDirectory: nil, cachedObjects: 256,
            logger: Logger(label: "test"), hooks: UnionHooks(), sharedIdentities: store)
    }

    func identityRows(_ u: UnionNamespace) throws -> [Int64] {
        try u.identities.sidecar.read("rows") { db in try Int64.fetchAll(db, sql: "SELECT fileid FROM identity") }
    }

    /// The shared store and two clients (1 and 2) over it, all closed after `body`.
    func withTwoClients(_ body: (SharedIdentities, UnionNamespace, UnionNamespace) throws -> Void) throws {
        let store = try self.openShared()
        defer { store.close() }
        let a = try self.open(1, store), c = try self.open(2, store)
        defer {
            a.close()
            c.close()
        }
        try body(store, a, c)
    }

    @Test func lowerObjectsHaveNoRowsOfTheirOwnAndTheSameNumberInEveryClient() throws {
        try self.withTwoClients { store, a, c in
            for path in ["etc", "etc/hostname", "usr/bin/sh", "var/log"] {
                let ia = try a.walk(path).1.fileid, ic = try c.walk(path).1.fileid
                #expect(ia == ic)
                #expect(store.range.contains(ia))
            }
            // Only each upper's root has a row of its own.
            #expect(try self.identityRows(a) == [1])
            #expect(try self.identityRows(c) == [1])
            #expect(try a.contents("etc/hostname") == "image")
        }
    }

    @Test func oneClientsHandlesNeverResolveInAnothers() throws {
        try self.withTwoClients { store, a, c in
            try a.mkfile("etc", "mine", "a's")
            let lowerOfA = try a.h("etc/hostname"), upperOfA = try a.h("etc/mine")
            _ = try c.h("etc/hostname")
            #expect(throws: UnionError.stale) { try c.getattr(lowerOfA) }
            #expect(throws: UnionError.stale) { try c.getattr(upperOfA) }
            #expect(try c.names("etc") == ["hostname"])
            #expect(throws: UnionError.noEntry) { try c.walk("etc/mine") }
            // The read-only namespace of the same store does not take a client's handles either.
            let ro = try UnionNamespace(
                upper: nil, lowers: [self.f.lower(0)], stateDirectory: nil, cachedObjects: 16,
                logger: Logger(label: "test"), sharedIdentities: store)
            defer { ro.close() }
            #expect(throws: UnionError.stale) { try ro.getattr(lowerOfA) }
            #expect(ro.identities === store.store)
        }
    }

    @Test func handlesSurviveRestartCopyUpAndRename() throws {
        var store = try self.openShared()
        var a = try self.open(1, store)
        let paths = ["etc", "etc/hostname", "usr", "usr/bin", "usr/bin/sh", "var/log"]
        let handles = try paths.map { try a.h($0) }
        let ids = try paths.map { try a.walk($0).1.fileid }
        try a.mkfile("var/log", "boot.log", "up")
        let log = try a.h("var/log/boot.log")
        a.close()
        store.close()

        store = try self.openShared()
        a = try self.open(1, store)
        for (h, id) in zip(handles, ids) { #expect(try a.getattr(h).fileid == id) }
        #expect(try a.walk("var/log/boot.log").0 == log)
        // Copy-up of a lower file and rename of a lower directory keep the fileids (the identities become rows of
        // this client's own, with the same numbers).
        try a.put("etc/hostname", "client1")
        try a.rename(from: a.rootHandle, b("usr"), to: a.rootHandle, b("opt"), as: root)
        #expect(try a.getattr(handles[1]).fileid == ids[1])
        #expect(try a.walk("opt/bin/sh").1.fileid == ids[4])
        #expect(try a.getattr(handles[4]).fileid == ids[4])
        a.close()
        store.close()

        store = try self.openShared()
        defer { store.close() }
        a = try self.open(1, store)
        defer { a.close() }
        for (h, id) in zip(handles, ids) { #expect(try a.getattr(h).fileid == id) }
        #expect(try a.contents("etc/hostname") == "client1")
        #expect(try a.walk("opt/bin/sh").0 == handles[4])
        // Another client still sees the image, under the same numbers.
        let c = try self.open(2, store)
        defer { c.close() }
        #expect(try c.contents("etc/hostname") == "image")
        #expect(try c.walk("usr/bin/sh").1.fileid == ids[4])
        #expect(throws: UnionError.noEntry) { try c.walk("opt") }
    }

    /// An upper made before shared stores keeps the fileids it gave; lower objects under its own directories keep
    /// getting fileids of its own, so every handle resolves along names it can walk.
    @Test func anUpperMadeBeforeSharedStoresKeepsItsHandles() throws {
        var a = try self.open(1, nil)
        let before = try ["etc", "etc/hostname", "usr/bin/sh"].map { try a.h($0) }
        a.close()
        let store = try self.openShared()
        defer { store.close() }
        a = try self.open(1, store)
        defer { a.close() }
        for h in before { #expect(try a.getattr(h).fileid == h.fileid) }
        #expect(try a.walk("etc/hostname").0 == before[1])
        // "var" is seen first now, under the root: its fileid is the shared one; "etc" keeps its own.
        #expect(store.range.contains(try a.walk("var/log").1.fileid))
        #expect(!store.range.contains(try a.walk("etc").1.fileid))
    }

    /// A shared store made anew (state_dir lost) would give its numbers to other objects: an upper holding rows in
    /// its range keeps numbering lower objects itself, and its handles of them die with the old store.
    @Test func aSharedStoreMadeAnewIsNotTakenByAnUpperThatUsedTheOldOne() throws {
        var store = try self.openShared()
        var a = try self.open(1, store)
        let lowerHandle = try a.h("usr/bin/sh")
        try a.put("etc/hostname", "host1")  // a row of its own in the shared range
        let copied = try a.h("etc/hostname")
        a.close()
        store.close()
        try FileManager.default.removeItem(atPath: self.shared)
        store = try self.openShared()
        defer { store.close() }
        // The new store numbers objects in another order.
        let ro = try UnionNamespace(
            upper: nil, lowers: [self.f.lower(0)], stateDirectory: nil, cachedObjects: 16,
            logger: Logger(label: "test"), sharedIdentities: store)
        _ = try ro.walk("var/log")
        ro.close()
        a = try self.open(1, store)
        defer { a.close() }
        #expect(a.identities.shared == nil)
        #expect(try a.getattr(copied).fileid == copied.fileid)
        #expect(try a.contents("etc/hostname") == "host1")
        #expect(throws: UnionError.stale) { try a.getattr(lowerHandle) }
        #expect(!store.range.contains(try a.walk("var/log").1.fileid))
    }

    /// Another image version's store numbers its objects in another range: a handle of one version never names an
    /// object of another.
    @Test func versionsNumberInDisjointRanges() throws {
        let v1 = try self.openShared(version: 1)
        let r1 = v1.range
        v1.close()
        try FileManager.default.removeItem(atPath: self.shared)
        let v2 = try self.openShared(version: 2)
        defer { v2.close() }
        #expect(!r1.overlaps(v2.range))
        #expect(r1.lowerBound >= SharedIdentities.span)
    }

    /// A fileid in a reply survives a crash: the shared row of a lower object is committed after the reply (its
    /// fileid is derived from its layer and inode), and when a crash lost the rows of the object and of the directories
    /// above it, the client's handle still resolves, to the same object and fileid.
    @Test func aFirstSightingSurvivesACrashThatLostItsSharedRows() throws {
        var store = try self.openShared()
        var a = try self.open(1, store)
        let paths = ["usr", "usr/bin", "usr/bin/sh"]
        let handles = try paths.map { try a.h($0) }
        let fileids = try paths.map { try a.walk($0).1.fileid }
        #expect(fileids.allSatisfy { DerivedFileids.origin($0 - store.base) != nil })
        a.close()
        let base = store.base
        store.close()
        try DerivedFileidTests.loseRows(self.shared + "/identity.db", fileids.map { $0 - base })
        store = try self.openShared()
        defer { store.close() }
        a = try self.open(1, store)
        defer { a.close() }
        #expect(try a.getattr(handles[2]).fileid == fileids[2])
        for (handle, fileid) in zip(handles, fileids) { #expect(try a.getattr(handle).fileid == fileid) }
        #expect(try a.contents("usr/bin/sh") == "sh")
        // The client's own rows still name none of them: they are shared again.
        #expect(try self.identityRows(a) == [1])
    }

    /// Opening an existing layer writes nothing (the fileid reservation is raised by the first allocation), and a
    /// fresh upper's first open neither: its sidecar was made with what the open would write.
    @Test func opensWriteNothingAndFileidsAreNeverReused() throws {
        let store = try self.openShared()
        defer { store.close() }
        func reserved() throws -> Int64? {
            let q = try DatabaseQueue(path: self.client(1) + "/layer.db")
            defer { try? q.close() }
            return try q.read { db in try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'fileidReserved'")
            }
        }
        var a = try self.open(1, store)
        #expect(a.rootHandle.fileid == 1)
        a.close()
        let first = try reserved()
        a = try self.open(1, store)
        a.close()
        #expect(try reserved() == first)
        // Fileids handed out before a reopen are never handed out again.
        var seen: Set<UInt64> = []
        for round in 0..<3 {
            a = try self.open(1, store)
            try a.mkfile("", "f\(round)")
            let id = try a.walk("f\(round)").1.fileid
            #expect(!seen.contains(id))
            #expect(id < SharedIdentities.span)
            seen.insert(id)
            a.close()
        }
    }
    /// The names of a hard-linked lower file (in two directories) as READDIR and READDIRPLUS list them and as LOOKUP
    /// finds them, listed first (`listFirst`) or looked up first: one object, so one fileid, and the same handle and
    /// attributes in a listing as in a lookup.
    func hardLinkSeenBothWays(
        _ u: UnionNamespace, listFirst: Bool, names: [(String, String)] = [("hl", "x"), ("other", "y")]
    ) throws -> UInt64 {
        func listed() throws -> [(fileid: UInt64, object: FoundObject?)] {
            try names.map { dir, name in
                let plain = try #require(u.readdir(u.h(dir), after: 0, as: root).entries.first { $0.name == b(name) })
                let page = try u.listDirectory(u.h(dir), after: 0, withObjects: true, withParent: false, as: root) {
                    _ in true
                }
                let plus = try #require(page.entries.first { $0.name == b(name) })
                #expect(plus.fileid == plain.fileid, "READDIRPLUS and READDIR list \(dir)/\(name) alike")
                return (plain.fileid, plus.object)
            }
        }
        func looked() throws -> [(ObjectHandle, Attributes)] { try names.map { try u.walk($0.0 + "/" + $0.1) } }
        let inListings: [(fileid: UInt64, object: FoundObject?)]
        let byLookup: [(ObjectHandle, Attributes)]
        if listFirst {
            inListings = try listed()
            byLookup = try looked()
        } else {
            byLookup = try looked()
            inListings = try listed()
        }
        for (index, (dir, name)) in names.enumerated() {
            let (handle, attributes) = byLookup[index]
            #expect(inListings[index].fileid == attributes.fileid, "\(dir)/\(name): listed fileid == LOOKUP's")
            #expect(inListings[index].object?.handle == handle, "\(dir)/\(name): READDIRPLUS handle == LOOKUP's")
            #expect(inListings[index].object?.attributes == attributes, "\(dir)/\(name): attributes")
        }
        #expect(Set(byLookup.map(\.1.fileid) + inListings.map(\.fileid)).count == 1, "one object, one fileid")
        return byLookup[0].1.fileid
    }

    /// A hard-linked lower file had its client's own fileid from LOOKUP but the shared one in a listing made first.
    @Test func aHardLinkedLowerFileHasOneFileidInListingsAndLookups() throws {
        self.f.mkdir(self.f.lower(0) + "/other")
        self.f.hardLinkedLowerFile("/hl/x", alsoAt: "/other/y", "linked")
        var before: [UInt64] = []
        try self.withTwoClients { store, a, c in
            // a lists first, the object's first sighting anywhere; c looks it up first, after a's sighting.
            before = [
                try self.hardLinkSeenBothWays(a, listFirst: true), try self.hardLinkSeenBothWays(c, listFirst: false),
            ]
            #expect(before.allSatisfy(store.range.contains), "a lower object the client never changed: shared")
        }
        try self.withTwoClients { _, a, c in
            // After a restart, in the other order: the same fileids.
            let after = [
                try self.hardLinkSeenBothWays(a, listFirst: false), try self.hardLinkSeenBothWays(c, listFirst: true),
            ]
            #expect(after == before)
            // The client counts the names itself: one removed and one added in a, none in c; one fileid throughout.
            try a.remove(in: a.h("hl"), b("x"), as: root)
            _ = try a.link(a.h("other/y"), in: a.rootHandle, b("top"), as: root)
            #expect(try ["other/y", "top"].map { try a.walk($0).1.nlink } == [2, 2])
            #expect(try Set(["other/y", "top"].map { try a.walk($0).1.fileid }) == [before[0]])
            #expect(try ["hl/x", "other/y"].map { try c.walk($0).1.nlink } == [2, 2])
        }
        try self.withTwoClients { _, a, _ in
            // After a restart: the counts persisted, and a listing still gives the same fileid.
            let counts = try ["other/y", "top"].map { try a.walk($0).1.nlink }
            #expect(counts == [2, 2])
            let fileid = try self.hardLinkSeenBothWays(a, listFirst: true, names: [("other", "y")])
            #expect(fileid == before[0])
        }
    }
}
