import Foundation
import Glibc
import Testing

@testable import Union

/// CREATE of a regular file without a spare makes it unnamed in its own directory (`O_TMPFILE`) and names it with
/// `linkat` (`UnnamedFiles` in Create.swift): nothing of it is ever in work/, a crash before the link leaves nothing
/// at all, and the file has every attribute the request set before it has a name.
@Suite struct UnnamedFileTests {
    static func work(_ f: Fixture) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: f.upper + "/work").sorted()
    }

    @Test(arguments: ["/tmp", "/dev/shm"])
    func createSetsEveryAttributeAndLeavesNothingInWork(in parent: String) throws {
        let f = Fixture(in: parent)
        let u = try f.open()
        defer { u.close() }
        var open = SetAttributes()
        open.mode = 0o777
        let pub = try u.mkdir(in: u.rootHandle, b("pub"), attributes: open, as: root).0
        #expect(UnnamedFiles.linking(try #require(u.upper)) != nil)
        var attrs = SetAttributes()
        attrs.mode = 0o640
        attrs.size = 5
        attrs.mtime = .clientTime(Timespec(seconds: 1_000_000, nanoseconds: 7))
        let (handle, made) = try u.create(in: pub, b("f"), mode: .guarded, attributes: attrs, as: alice)
        #expect(try Self.work(f).isEmpty)
        #expect(made.uid == alice.uid && made.gid == alice.gid)
        #expect(made.mode == 0o640 && made.size == 5 && made.nlink == 1)
        #expect(made.mtime.seconds == 1_000_000 && made.mtime.nanoseconds == 7)
        var st = stat()
        #expect(lstat(f.upper + "/tree/pub/f", &st) == 0)
        #expect(try u.getattr(handle).fileid == made.fileid)
        #expect(st.st_uid == alice.uid && st.st_mode & 0o7777 == 0o640 && st.st_size == 5)
        // GUARDED again: the name is taken.
        #expect(throws: UnionError.exists) {
            _ = try u.create(in: pub, b("f"), mode: .guarded, attributes: .init(), as: alice)
        }
        #expect(try u.names("pub") == ["f"])
    }

    /// The file is made with the requested permission bits and is chowned and chmodded only when that left it
    /// other than asked: by another caller than the server's user, with bits the umask cuts (0o777 under the usual
    /// 022) or that an open does not set (set-uid, set-gid, sticky), in a set-gid directory.
    @Test(
        arguments: [
            (root, 0o644, false), (root, 0o777, false), (root, 0o4755, false), (root, 0o2750, false),
            (root, 0o1644, false), (alice, 0o644, false), (alice, 0o600, true), (root, 0o640, true),
        ] as [(Credentials, UInt32, Bool)])
    func ownerAndModeAreTheRequestedOnes(cred: Credentials, mode: UInt32, setgidDirectory: Bool) throws {
        let f = Fixture()
        let u = try f.open()
        defer { u.close() }
        var open = SetAttributes()
        open.mode = 0o777
        let dir = try u.mkdir(in: u.rootHandle, b("d"), attributes: open, as: root).0
        // MKDIR takes no set-gid from a request: set behind the union's back (a cached node's stat is refreshed).
        if setgidDirectory {
            #expect(chown(f.upper + "/tree/d", 0, bob.gid) == 0 && chmod(f.upper + "/tree/d", 0o2777) == 0)
        }
        var attrs = SetAttributes()
        attrs.mode = mode
        let (_, made) = try u.create(in: dir, b("f"), mode: .guarded, attributes: attrs, as: cred)
        let gid = setgidDirectory ? bob.gid : cred.gid
        var st = stat()
        #expect(lstat(f.upper + "/tree/d/f", &st) == 0)
        #expect(st.st_uid == cred.uid && st.st_gid == gid && UInt32(st.st_mode) & 0o7777 == mode)
        #expect(made.uid == cred.uid && made.gid == gid && made.mode == mode)
        #expect(made.ctime.seconds == Int64(st.st_ctim.tv_sec) && made.ctime.nanoseconds == UInt32(st.st_ctim.tv_nsec))
    }

    @Test(arguments: ["create.afterBuild", "create.afterRecord"])
    func crashBeforeTheLinkLeavesNoNameAndNoLeftover(point: String) throws {
        let f = Fixture()
        var u = try f.open()
        u.hooks?.crashAt.withLock { $0 = point }
        #expect(throws: UnionError.simulatedCrash(point: point)) {
            _ = try u.create(in: u.rootHandle, b("f"), mode: .guarded, attributes: .init(), as: root)
        }
        #expect(try Self.work(f).isEmpty)  // made in tree/ itself, unnamed: nothing to clean at open
        #expect(!f.exists(f.upper + "/tree/f"))
        u.close()
        u = try f.open()
        defer { u.close() }
        #expect(throws: UnionError.noEntry) { try u.walk("f") }
        let (handle, made) = try u.create(in: u.rootHandle, b("f"), mode: .guarded, attributes: .init(), as: root)
        #expect(try u.getattr(handle).fileid == made.fileid)
        #expect(try u.names("") == ["f"])
    }

    /// The link never replaces: a name taken meanwhile fails the create as the rename did (`.exists`), and the name
    /// keeps its file.
    @Test func linkFailsOnATakenName() throws {
        let f = Fixture()
        let u = try f.open()
        defer { u.close() }
        try u.mkfile("", "taken", "old")
        let upper = try #require(u.upper)
        let way = try #require(UnnamedFiles.linking(upper))
        let tree = try Files.openDirectoryAbsolute(f.upper + "/tree")
        let file = FD(openat(tree.raw, ".", UnnamedFiles.openFlags | O_WRONLY | O_CLOEXEC, 0o600))
        #expect(file.raw >= 0)
        #expect(throws: UnionError.exists) { try UnnamedFiles.link(file, tree, b("taken"), path: "taken", way) }
        #expect(f.read(f.upper + "/tree/taken") == "old")
        try UnnamedFiles.link(file, tree, b("new"), path: "new", way)
        #expect(f.read(f.upper + "/tree/new") == "")
    }
}
