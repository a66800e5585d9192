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
