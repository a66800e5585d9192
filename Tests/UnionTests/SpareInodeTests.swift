import Foundation
import Glibc
import Testing

@testable import Union

/// REMOVE keeps the inode of an empty upper-only file in work/, and the next CREATE takes it (`SpareInodes.swift`):
/// the new file is a new object in every way a client can see.
@Suite struct SpareInodeTests {
    static func ino(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : 0
    }

    /// The namespace of `f`, keeping spares whatever file system the test directory is on (only ext4 without a
    /// journal needs them, `UpperLayer.keepsSpareInodes`; /dev/shm is tmpfs).
    static func openKeepingSpares(_ f: Fixture) throws -> UnionNamespace {
        let u = try f.open()
        u.hooks?.spareInodes.store(1, ordering: .relaxed)
        return u
    }

    /// The namespace of `f`, with a directory /pub everyone may write in.
    static func openWithPublicDirectory(_ f: Fixture) throws -> (UnionNamespace, ObjectHandle) {
        let u = try Self.openKeepingSpares(f)
        var open = SetAttributes()
        open.mode = 0o777
        do {
            return (u, try u.mkdir(in: u.rootHandle, b("pub"), attributes: open, as: root).0)
        } catch {
            u.close()
            throw error
        }
    }

    static func work(_ f: Fixture) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: f.upper + "/work").sorted()
    }

    /// The removes of a large tree all leave spares, up to `SpareInodes.limit` and no more, and the creates after them
    /// take every one (no inode allocated, nothing left in work/); close removes what is left. 10,000 REMOVEs then
    /// 10,000 CREATEs (a benchmark's round) allocated 5,904 inodes with the first limit of 4,096.
    @Test func aTreeOfRemovesFeedsTheCreatesAfterIt() throws {
        let f = Fixture(in: "/dev/shm")
        let (u, pub) = try Self.openWithPublicDirectory(f)
        let count = SpareInodes.limit + 10
        #expect(count > 10_000)
        for i in 0..<count { _ = try u.create(in: pub, b("f\(i)"), mode: .guarded, attributes: .init(), as: root) }
        var inodes = Set<UInt64>()
        for i in 0..<count {
            inodes.insert(Self.ino(f.upper + "/tree/pub/f\(i)"))
            try u.remove(in: pub, b("f\(i)"), as: root)
        }
        #expect(u.spareInodes.withLock { $0.count } == SpareInodes.limit)
        #expect(try Self.work(f).count == SpareInodes.limit)
        var allocated: [Int] = []
        for i in 0..<SpareInodes.limit {
            _ = try u.create(in: pub, b("g\(i)"), mode: .guarded, attributes: .init(), as: root)
            if !inodes.contains(Self.ino(f.upper + "/tree/pub/g\(i)")) { allocated.append(i) }
        }
        #expect(allocated.isEmpty, "\(allocated.count) creates took a new inode instead of a spare")
        #expect(u.spareInodes.withLock { $0.count } == 0)
        #expect(try Self.work(f).isEmpty)
        for i in 0..<3 { try u.remove(in: pub, b("g\(i)"), as: root) }
        #expect(try Self.work(f).count == 3)
        u.close()
        #expect(try Self.work(f).isEmpty)
    }

    @Test func createTakesTheInodeAnEmptyRemovedFileLeftAsANewObject() throws {
        let f = Fixture(in: "/dev/shm")
        let (u, pub) = try Self.openWithPublicDirectory(f)
        defer { u.close() }
        var setuid = SetAttributes()
        setuid.mode = 0o4755
        let (oldH, oldA) = try u.create(in: pub, b("old"), mode: .guarded, attributes: setuid, as: root)
        let oldIno = Self.ino(f.upper + "/tree/pub/old")
        try u.remove(in: pub, b("old"), as: root)
        #expect(try Self.work(f).count == 1)
        #expect(throws: UnionError.stale) { try u.getattr(oldH) }

        let before = Date().timeIntervalSince1970 - 1
        var attrs = SetAttributes()
        attrs.mode = 0o640
        let (newH, newA) = try u.create(in: pub, b("new"), mode: .guarded, attributes: attrs, as: alice)
        #expect(Self.ino(f.upper + "/tree/pub/new") == oldIno)  // the spare was taken
        #expect(try Self.work(f).isEmpty)
        #expect(newA.fileid != oldA.fileid)  // fileids are never reused
        #expect(newA.uid == alice.uid && newA.gid == alice.gid)
        #expect(newA.mode == 0o640)  // nothing of the old mode (set-uid) is left
        #expect(newA.size == 0 && newA.nlink == 1)
        #expect(Double(newA.mtime.seconds) >= before && Double(newA.atime.seconds) >= before)
        #expect(Double(newA.ctime.seconds) >= before)
        #expect(throws: UnionError.stale) { try u.getattr(oldH) }
        #expect(try u.getattr(newH).fileid == newA.fileid)
        #expect(try u.names("pub") == ["new"])
    }

    /// A spare taken by the owner and mode it had keeps them without a chown or chmod, and gets its times from now:
    /// the new file shows nothing of the old one but its inode number.
    @Test(
        arguments: [(root, UInt32(0o644)), (root, UInt32(0o4755)), (alice, UInt32(0o640))] as [(Credentials, UInt32)])
    func aSpareTakenWithTheOwnerAndModeItHadIsANewFileToo(cred: Credentials, mode: UInt32) throws {
        let f = Fixture(in: "/dev/shm")
        let (u, pub) = try Self.openWithPublicDirectory(f)
        defer { u.close() }
        var attrs = SetAttributes()
        attrs.mode = mode
        attrs.mtime = .clientTime(Timespec(seconds: 1_000_000, nanoseconds: 0))
        attrs.atime = .clientTime(Timespec(seconds: 1_000_000, nanoseconds: 0))
        _ = try u.create(in: pub, b("old"), mode: .guarded, attributes: attrs, as: cred)
        let oldIno = Self.ino(f.upper + "/tree/pub/old")
        try u.remove(in: pub, b("old"), as: cred)
        #expect(try Self.work(f).count == 1)
        let before = Date().timeIntervalSince1970 - 1
        var again = SetAttributes()
        again.mode = mode
        let (_, made) = try u.create(in: pub, b("new"), mode: .guarded, attributes: again, as: cred)
        #expect(Self.ino(f.upper + "/tree/pub/new") == oldIno)  // the spare was taken
        var st = stat()
        #expect(lstat(f.upper + "/tree/pub/new", &st) == 0)
        #expect(st.st_uid == cred.uid && st.st_gid == cred.gid && UInt32(st.st_mode) & 0o7777 == mode)
        #expect(made.uid == cred.uid && made.gid == cred.gid && made.mode == mode)
        #expect(Double(made.mtime.seconds) >= before && Double(made.atime.seconds) >= before)
        #expect(Double(st.st_mtim.tv_sec) >= before)
    }

    /// Names under work/ are unique without a random draw each, and keep their kind as prefix (open tells spares by it).
    @Test func workNamesAreUniqueAndKeepTheirPrefix() {
        let names = (0..<1000).map { _ in WorkNames.next("spare") }
        #expect(Set(names).count == 1000)
        #expect(names.allSatisfy { $0.starts(with: Array("spare-".utf8)) })
    }

    @Test func onlyEmptyUpperOnlyFilesAreKept() throws {
        let f = Fixture(in: "/dev/shm")
        f.file(f.lower(0) + "/lowerEmpty", "")
        let u = try Self.openKeepingSpares(f)
        defer { u.close() }
        try u.mkfile("", "full", "data")
        _ = try u.create(in: u.rootHandle, b("linked"), mode: .guarded, attributes: .init(), as: root)
        _ = try u.link(try u.h("linked"), in: u.rootHandle, b("other"), as: root)
        try u.remove(in: u.rootHandle, b("full"), as: root)
        try u.remove(in: u.rootHandle, b("linked"), as: root)  // another link keeps the inode
        try u.remove(in: u.rootHandle, b("lowerEmpty"), as: root)  // a whiteout, nothing in the upper
        #expect(try Self.work(f).isEmpty)
        #expect(try u.names("") == ["other"])
    }

    @Test func sparesAreRemovedAtCloseAndAtOpenWithoutANotice() throws {
        let f = Fixture(in: "/dev/shm")
        var u = try Self.openKeepingSpares(f)
        _ = try u.create(in: u.rootHandle, b("a"), mode: .guarded, attributes: .init(), as: root)
        try u.remove(in: u.rootHandle, b("a"), as: root)
        #expect(try Self.work(f).count == 1)
        u.close()
        #expect(try Self.work(f).isEmpty)
        // A crash leaves them in work/: open removes them.
        f.file(f.upper + "/work/spare-1", "")
        u = try Self.openKeepingSpares(f)
        #expect(try Self.work(f).isEmpty)
        _ = try u.create(in: u.rootHandle, b("b"), mode: .guarded, attributes: .init(), as: root)
        #expect(try u.names("") == ["b"])
        u.close()
    }

    /// A crash right after an empty file went to work/: after a reopen the name is gone, work/ is empty and the name
    /// can be made again.
    @Test func aCrashAfterKeepingASpareLosesNothing() throws {
        let f = Fixture(in: "/dev/shm")
        var u = try Self.openKeepingSpares(f)
        _ = try u.create(in: u.rootHandle, b("a"), mode: .guarded, attributes: .init(), as: root)
        _ = try u.create(in: u.rootHandle, b("keep"), mode: .guarded, attributes: .init(), as: root)
        let kept = try u.walk("keep").1.fileid
        u.hooks?.crashAt.withLock { $0 = "remove.afterUnlink" }
        #expect(throws: UnionError.simulatedCrash(point: "remove.afterUnlink")) {
            try u.remove(in: u.rootHandle, b("a"), as: root)
        }
        u.identities.commits.abandon()
        u.close()
        u = try Self.openKeepingSpares(f)
        defer { u.close() }
        #expect(try Self.work(f).isEmpty)
        #expect(try u.names("") == ["keep"])
        #expect(try u.walk("keep").1.fileid == kept)
        _ = try u.create(in: u.rootHandle, b("a"), mode: .guarded, attributes: .init(), as: root)
        #expect(try u.names("") == ["a", "keep"])
    }

    /// Where new inodes do not skip recently freed ones (tmpfs here; ext4 with a journal, XFS), REMOVE unlinks: a
    /// spare would cost a rename into work/ and buy nothing. Only ext4 without a journal keeps them.
    @Test func onlyAFileSystemThatSkipsRecentlyFreedInodesKeepsSpares() throws {
        let f = Fixture(in: "/dev/shm")
        let u = try f.open()
        defer { u.close() }
        let tree = try Files.openDirectoryAbsolute(f.upper + "/tree")
        #expect(!Files.skipsRecentlyFreedInodes(tree, sync: Files.filesystemSync(for: tree)))
        #expect(!u.keepsSpareInodes)
        _ = try u.create(in: u.rootHandle, b("a"), mode: .guarded, attributes: .init(), as: root)
        try u.remove(in: u.rootHandle, b("a"), as: root)
        #expect(try Self.work(f).isEmpty)
        _ = try u.create(in: u.rootHandle, b("b"), mode: .guarded, attributes: .init(), as: root)
        #expect(try u.names("") == ["b"])
    }
}
