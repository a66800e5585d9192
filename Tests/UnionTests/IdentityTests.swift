import Basics
import Foundation
import GRDB
import Glibc
import Testing

@testable import Union

@Suite struct IdentityTests {
    @Test func fileidsAndHandlesSurviveReopen() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/lowerfile", "L")
        var u = try f.open()
        try u.mkfile("d", "upperfile", "U")
        _ = try u.mkdir(in: u.rootHandle, b("newdir"), attributes: .init(), as: root)
        let paths = ["", "d", "d/lowerfile", "d/upperfile", "newdir"]
        let handles = try paths.map { try u.h($0) }
        let ids = try paths.map { try u.walk($0).1.fileid }
        #expect(Set(ids).count == ids.count)
        #expect(handles.allSatisfy { $0.bytes.count <= 56 })
        u.close()
        #expect(throws: UnionError.stale) { try u.getattr(handles[1]) }
        u = try f.open()
        #expect(u.rootHandle == handles[0])
        for (h, id) in zip(handles, ids) {
            #expect(try u.getattr(h).fileid == id)
        }
        #expect(try paths.map { try u.h($0) } == handles)
        // Copy-up after the reopen keeps the fileid too.
        try u.put("d/lowerfile", "X")
        #expect(try u.getattr(handles[2]).fileid == ids[2])
    }

    @Test func removedObjectsHandleIsStale() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/lower", "L")
        let u = try f.open()
        try u.mkfile("", "upper", "U")
        let hu = try u.h("upper"), hl = try u.h("lower")
        try u.remove(in: u.rootHandle, b("upper"), as: root)
        try u.remove(in: u.rootHandle, b("lower"), as: root)
        #expect(throws: UnionError.stale) { try u.getattr(hu) }
        #expect(throws: UnionError.stale) { try u.getattr(hl) }
        // A new object at the same name is a new object.
        try u.mkfile("", "upper", "again")
        #expect(throws: UnionError.stale) { try u.getattr(hu) }
        #expect(try u.walk("upper").1.fileid != hu.fileid)
    }

    /// A REMOVE forgets its object's rows with the statements it needs: identity and verifier; linkName only for an
    /// object that has other names recorded (the in-memory mirror of that table says so).
    @Test func forgettingAnObjectDeletesOnlyTheRowsItCanHave() throws {
        let f = Fixture(in: "/dev/shm")
        let u = try f.open()
        defer { u.close() }
        try u.mkfile("", "plain", "")
        let plain = try u.h("plain").fileid
        let deletes = Locked<[String]>([])
        u.identities.sidecar.queue.inDatabase { db in
            db.trace(options: .statement) { event in
                let sql = "\(event)"
                if sql.hasPrefix("DELETE") { deletes.withLock { $0.append(sql) } }
            }
        }
        try u.remove(in: u.rootHandle, b("plain"), as: root)
        #expect(
            deletes.withLock { $0 } == [
                "DELETE FROM identity WHERE fileid = ?", "DELETE FROM verifier WHERE fileid = ?",
            ])
        #expect(u.identities.identity(plain) == nil)
        // An object forgotten with other names still recorded: its linkName rows go too.
        try u.mkfile("", "x", "")
        let x = try u.h("x").fileid
        u.identities.addName(x, LinkName(parent: u.rootHandle.fileid, name: b("y")))
        try u.identities.commits.drain()
        try u.remove(in: u.rootHandle, b("x"), as: root)
        let left = try u.identities.sidecar.read("test") { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM linkName WHERE fileid = ?", arguments: [Int64(x)])
        }
        #expect(left == 0)
    }

    @Test func malformedHandlesAreRejected() throws {
        #expect(ObjectHandle(bytes: []) == nil)
        #expect(ObjectHandle(bytes: [UInt8](repeating: 0, count: 24)) == nil)
        #expect(ObjectHandle(bytes: [UInt8](repeating: 0x53, count: 64)) == nil)
        let f = Fixture()
        let u = try f.open()
        var other = u.rootHandle.bytes
        other[19] ^= 0xff  // a wrong tag (another namespace's, or forged)
        #expect(throws: UnionError.stale) { try u.getattr(ObjectHandle(bytes: other)!) }
        var unknown = u.rootHandle.bytes
        unknown[11] = 0x7f  // a fileid never allocated
        #expect(throws: UnionError.stale) { try u.getattr(ObjectHandle(bytes: unknown)!) }
    }

    @Test func readOnlyNamespaceKeepsIdentityInStateDirectory() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a/b", "B")
        var u = try f.open(upper: false, state: true)
        #expect(u.isReadOnly)
        let h = try u.h("a/b")
        #expect(throws: UnionError.readOnly) { try u.mkfile("", "x") }
        #expect(throws: UnionError.readOnly) { try u.put("a/b", "x") }
        #expect(throws: UnionError.readOnly) { try u.remove(in: u.h("a"), b("b"), as: root) }
        u.close()
        u = try f.open(upper: false, state: true)
        #expect(try u.getattr(h).fileid == h.fileid)
        #expect(f.exists(f.state() + "/identity.db"))
        #expect(!f.exists(f.lower(0) + "/layer.db"))
    }

    @Test func lookupParentReturnsParentAndRootIsItsOwnParent() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a/b/c", "C")
        let u = try f.open()
        let (p, _) = try u.lookupParent(u.h("a/b"), as: root)
        #expect(p == (try u.h("a")))
        #expect(try u.lookupParent(u.rootHandle, as: root).0 == u.rootHandle)
    }
}

@Suite struct ResourceTests {
    /// Descriptors of this process open on something under `directory`. Counting only those, not
    /// every descriptor of the process, keeps other suites running in parallel out of the count.
    static func openDescriptors(under directory: String) -> Int {
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return descriptors.filter { fd in
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd)) ?? ""
            return target == directory || target.hasPrefix(directory + "/")
        }.count
    }

    @Test func closeReleasesAllDescriptors() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/x", "x")
        f.file(f.lower(1) + "/d/y", "y")
        f.mkdir(f.lower(1) + "/tree")  // a plain lower may hold a directory named tree
        let before = Self.openDescriptors(under: f.base)
        do {
            let u = try f.open(lowers: 2)
            for i in 0..<50 {
                try u.mkfile("d", "f\(i)", "data")
                _ = try u.contents("d/f\(i)")
                _ = try u.readdir(u.h("d"), after: 0, as: root)
            }
            try u.put("d/y", "Y")
            #expect(Self.openDescriptors(under: f.base) > before, "the count sees the layers' descriptors")
            u.close()
            #expect(throws: UnionError.stale) { try u.getattr(u.rootHandle) }
            #expect(throws: UnionError.readOnly) {
                try u.mkdir(in: u.rootHandle, b("z"), attributes: .init(), as: root)
            }
            u.close()  // twice is fine
        }
        #expect(Self.openDescriptors(under: f.base) == before)
    }
}

@Suite struct HardLinkIdentityTests {
    @Test func handleSurvivesRemovalOfFirstName() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "a", "data")
        let h = try u.h("a")
        _ = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root)
        _ = try u.link(h, in: u.h("d"), b("b"), as: root)
        #expect(try u.walk("d/b").0 == h)
        try u.remove(in: u.rootHandle, b("a"), as: root)  // `ln a b; rm a`
        #expect(try u.getattr(h).nlink == 1)
        #expect(try u.read(h, offset: 0, count: 10, as: root).data == b("data"))
        try u.rename(from: u.h("d"), b("b"), to: u.rootHandle, b("c"), as: root)
        #expect(try u.getattr(h).size == 4)
        u.close()
        let u2 = try f.open()
        #expect(try u2.getattr(h).size == 4)
        try u2.remove(in: u2.rootHandle, b("c"), as: root)
        #expect(throws: UnionError.stale) { try u2.getattr(h) }
    }

    @Test func lowerHardLinkHandleSurvivesRemovalOfFirstName() throws {
        let f = Fixture()
        f.hardLinkedLowerFile("/x", alsoAt: "/y", "lower")
        let u = try f.open()
        let h = try u.h("x")
        #expect(try u.h("y") == h)  // y seen: its name is remembered
        try u.remove(in: u.rootHandle, b("x"), as: root)
        #expect(try u.read(h, offset: 0, count: 10, as: root).data == b("lower"))
        u.close()
        let u2 = try f.open()
        #expect(try u2.read(h, offset: 0, count: 10, as: root).data == b("lower"))
    }
}

@Suite struct StackChangeTests {
    @Test func changedLowerStackDoesNotConfuseIdentities() throws {
        let f = Fixture()
        f.file(f.lower(1) + "/a", "A")  // same inode numbers may appear in the new top lower
        f.file(f.lower(1) + "/copied", "C")
        var u = try UnionNamespace(upper: f.upper, lowers: [f.lower(1)], logger: .init(label: "t"))
        let lowerID = try u.walk("a").1.fileid
        try u.put("copied", "X")
        let copiedID = try u.walk("copied").1.fileid
        try u.mkfile("", "mine", "M")
        let mineID = try u.walk("mine").1.fileid
        u.close()
        f.file(f.lower(0) + "/new", "N")
        u = try f.open(lowers: 2)  // lower0 now sits above lower1
        #expect(try u.walk("mine").1.fileid == mineID)
        #expect(try u.walk("copied").1.fileid == copiedID)
        #expect(try u.contents("copied") == "X")
        #expect(try u.contents("a") == "A")
        #expect(try u.contents("new") == "N")
        let ids = try ["a", "new", "mine", "copied"].map { try u.walk($0).1.fileid }
        #expect(Set(ids).count == 4)
        _ = lowerID
        u.close()
        // Opening again with the same stack changes nothing.
        let again = try f.open(lowers: 2)
        #expect(try ["a", "new", "mine", "copied"].map { try again.walk($0).1.fileid } == ids)
    }
}
