import Foundation
import Glibc
import Synchronization
import Testing

@testable import Union

@Suite struct CopyUpTests {
    @Test func copyUpPreservesModeOwnerTimesXattrs() throws {
        let f = Fixture()
        let p = f.lower(0) + "/dir/file"
        f.file(p, "hello", mode: 0o4751, uid: 1000, gid: 1000)
        chown(f.lower(0) + "/dir", 1000, 1000)
        chmod(f.lower(0) + "/dir", 0o2711)
        f.setXattr(p, "user.color", "blue")
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 5), timespec(tv_sec: 2_000_000, tv_nsec: 7)]
        utimensat(AT_FDCWD, p, &times, 0)
        utimensat(AT_FDCWD, f.lower(0) + "/dir", &times, 0)
        let u = try f.open()
        let before = try u.getattr(u.h("dir/file"))
        // A root write copies up (root keeps set-id bits).
        try u.put("dir/file", "J", at: 0)
        let after = try u.getattr(u.h("dir/file"))
        #expect(after.fileid == before.fileid)
        #expect(after.atime == Timespec(seconds: 1_000_000, nanoseconds: 5))
        #expect(f.exists(f.upper + "/tree/dir/file"))
        #expect(f.read(f.upper + "/tree/dir/file") == "Jello")
        #expect(f.read(p) == "hello")
        var st = stat()
        lstat(f.upper + "/tree/dir/file", &st)
        #expect(st.st_mode & 0o7777 == 0o4751)
        #expect(st.st_uid == 1000 && st.st_gid == 1000)
        #expect(f.getXattr(f.upper + "/tree/dir/file", "user.color") == "blue")
        lstat(f.upper + "/tree/dir", &st)
        #expect(st.st_mode & 0o7777 == 0o2711)
        #expect(st.st_uid == 1000)
        #expect(st.st_mtim.tv_sec == 2_000_000)
        // chmod copies up without data change and keeps times.
        f.file(f.lower(0) + "/other", "x", mode: 0o600)
        utimensat(AT_FDCWD, f.lower(0) + "/other", &times, 0)
        _ = try u.setattr(u.h("other"), SetAttributes(mode: 0o640), guardCtime: nil, as: root)
        lstat(f.upper + "/tree/other", &st)
        #expect(st.st_mode & 0o7777 == 0o640)
        #expect(st.st_mtim.tv_sec == 2_000_000)
    }

    @Test func copyUpPreservesHoles() throws {
        let f = Fixture()
        let p = f.lower(0) + "/sparse"
        f.file(p)
        let fd = open(p, O_WRONLY)
        _ = "head".withCString { pwrite(fd, $0, 4, 0) }
        _ = "tail".withCString { pwrite(fd, $0, 4, 64 << 20) }
        close(fd)
        let u = try f.open()
        try u.put("sparse", "H")
        var st = stat()
        lstat(f.upper + "/tree/sparse", &st)
        #expect(st.st_size == (64 << 20) + 4)
        #expect(st.st_blocks * 512 < 1 << 20, "holes were filled: \(st.st_blocks) blocks")
        let r = try u.read(u.h("sparse"), offset: 64 << 20, count: 10, as: root)
        #expect(r.data == b("tail") && r.isEOF)
        #expect(try u.read(u.h("sparse"), offset: 0, count: 4, as: root).data == b("Head"))
    }

    /// A copy is written back in steps while it is copied (`FileCopy.writebackStep`): data that crosses a step, a hole
    /// between steps and a tail shorter than a step all arrive whole.
    @Test func copyUpOfAFileOfSeveralWritebackStepsKeepsEveryByte() throws {
        let f = Fixture()
        let p = f.lower(0) + "/big"
        f.file(p)
        let step = Int(FileCopy.writebackStep)
        // Data from 0 to 1.25 steps, a hole, then data from 2.5 steps to 3 steps and 3 bytes.
        let head = (0..<(step + step / 4)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        let tail = (0..<(step / 2 + 3)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let tailOffset = 2 * step + step / 2
        let fd = open(p, O_WRONLY)
        #expect(head.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == head.count)
        #expect(tail.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(tailOffset)) } == tail.count)
        close(fd)
        let u = try f.open()
        try u.put("big", "Z", at: UInt64(tailOffset + tail.count - 1))
        let copied = try #require(FileManager.default.contents(atPath: f.upper + "/tree/big"))
        var expected = [UInt8](repeating: 0, count: tailOffset + tail.count)
        expected.replaceSubrange(0..<head.count, with: head)
        expected.replaceSubrange(tailOffset..<(tailOffset + tail.count), with: tail)
        expected[expected.count - 1] = UInt8(ascii: "Z")
        #expect(copied.count == expected.count)
        #expect(Array(copied) == expected)
        // The lower is untouched: its last byte is still the tail's.
        let lower = try #require(FileManager.default.contents(atPath: p))
        #expect(lower[lower.count - 1] == tail[tail.count - 1])
    }

    @Test func workLeftoversAreCleanedOnReopen() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "lower")
        var u = try f.open()
        let fileid = try u.walk("a").1.fileid
        u.close()
        // An interrupted copy-up: the copy under work/, the identity committed, the rename not done.
        f.file(f.upper + "/work/copyup-123", "half")
        f.mkdir(f.upper + "/work/new-dir")
        f.file(f.upper + "/work/new-dir/x", "x")
        u = try f.open()
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.upper + "/work").isEmpty)
        #expect(!f.exists(f.upper + "/tree/a"))
        #expect(try u.contents("a") == "lower")
        #expect(try u.walk("a").1.fileid == fileid)
    }

    @Test func copyUpIsNeverVisibleHalfDone() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/big", String(repeating: "z", count: 4 << 20))
        let u = try f.open()
        let h = try u.h("big")
        let done = Flag()
        let sawPartial = Flag()
        let target = f.upper + "/tree/big"
        let watcher = Thread {
            while !done.isSet {
                var st = stat()
                if lstat(target, &st) == 0 && st.st_size != 4 << 20 { sawPartial.set() }
            }
        }
        watcher.start()
        _ = try [UInt8](b("Q")).withUnsafeBytes { try u.write(h, offset: 0, data: $0, stable: .unstable, as: root) }
        done.set()
        let partial = sawPartial.isSet
        #expect(!partial)
        #expect(try u.read(h, offset: 0, count: 2, as: root).data == b("Qz"))
    }

    @Test func concurrentWritersCopyUpOnce() async throws {
        let f = Fixture()
        f.file(f.lower(0) + "/shared", String(repeating: ".", count: 64))
        let u = try f.open()
        let h = try u.h("shared")
        await withTaskGroup(of: Void.self) { g in
            for i in 0..<16 {
                g.addTask {
                    let byte = [UInt8(65 + i)]
                    _ = try? byte.withUnsafeBytes {
                        try u.write(h, offset: UInt64(i), data: $0, stable: .unstable, as: root)
                    }
                }
            }
        }
        let copies = try #require(u.hooks).copyUpCount.load(ordering: .relaxed)
        #expect(copies == 1)
        let data = try u.read(h, offset: 0, count: 64, as: root).data
        let expected: [UInt8] = (0..<16).map { UInt8(65 + $0) }
        #expect(Array(data[0..<16]) == expected)
    }

    @Test func hardLinksStayHardLinksAfterCopyUp() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a/one", "same")
        f.mkdir(f.lower(0) + "/b")
        link(f.lower(0) + "/a/one", f.lower(0) + "/b/two")
        let u = try f.open()
        let id1 = try u.walk("a/one").1.fileid
        #expect(try u.walk("b/two").1.fileid == id1)
        try u.put("a/one", "SAME")
        let a1 = try u.walk("a/one").1
        let a2 = try u.walk("b/two").1
        #expect(a1.fileid == id1 && a2.fileid == id1)
        #expect(a1.nlink == 2 && a2.nlink == 2)
        #expect(try u.contents("b/two") == "SAME")
        // Writing through the other name writes the same upper inode.
        try u.put("b/two", "both")
        #expect(try u.contents("a/one") == "both")
        // A change of the name itself links the upper copy up from the index.
        try u.rename(from: u.h("b"), b("two"), to: u.h("b"), b("renamed"), as: root)
        var s1 = stat(), s2 = stat()
        lstat(f.upper + "/tree/a/one", &s1)
        lstat(f.upper + "/tree/b/renamed", &s2)
        #expect(s1.st_ino == s2.st_ino)
        #expect(try u.walk("b/renamed").1.nlink == 2)
        #expect(try u.walk("b/renamed").1.fileid == id1)
        #expect(throws: UnionError.noEntry) { try u.walk("b/two") }
        try u.rename(from: u.h("b"), b("renamed"), to: u.h("b"), b("two"), as: root)
        // And across a reopen.
        u.close()
        let u2 = try f.open()
        #expect(try u2.walk("b/two").1.fileid == id1)
        #expect(try u2.contents("b/two") == "both")
    }
}

@Suite struct SpecialCopyUpTests {
    @Test func specialFilesAndSymlinksCopyUpWithTheirType() throws {
        let f = Fixture()
        f.mkdir(f.lower(0))
        mkfifo(f.lower(0) + "/fifo", 0o640)
        mknod(f.lower(0) + "/null", S_IFCHR | 0o666, Sys.makedev(1, 3))
        f.symlink(f.lower(0) + "/link", to: "../../../etc/passwd")
        let u = try f.open()
        for name in ["fifo", "null", "link"] {
            let before = try u.walk(name).1
            let after = try u.setattr(u.h(name), .init(uid: 1234, gid: 4321), guardCtime: nil, as: root)
            #expect(after.type == before.type && after.fileid == before.fileid)
            #expect(after.uid == 1234 && after.gid == 4321)
            #expect(after.rdev == before.rdev)
            #expect(after.mtime == before.mtime)
            #expect(f.exists(f.upper + "/tree/" + name))
        }
        #expect(try u.readlink(u.h("link"), as: root) == b("../../../etc/passwd"))
        #expect(try u.walk("null").1.rdev == DeviceNumber(major: 1, minor: 3))
        #expect(try u.walk("fifo").1.mode == 0o640)
        // Reading a fifo through the union never blocks: it is not a regular file.
        #expect(throws: UnionError.invalid("not a regular file")) {
            try u.read(u.h("fifo"), offset: 0, count: 1, as: root)
        }
    }
}

@Suite struct TruncateCopyUpTests {
    @Test(arguments: [UInt64(0), 3, 100])
    func truncationCopiesOnlyWhatStays(size: UInt64) throws {
        let f = Fixture()
        f.file(f.lower(0) + "/big", String(repeating: "a", count: 50))
        let u = try f.open()
        let a = try u.setattr(u.h("big"), .init(size: size), guardCtime: nil, as: root)
        #expect(a.size == size)
        let data = try u.read(u.h("big"), offset: 0, count: 200, as: root).data
        #expect(
            data == [UInt8](repeating: 0x61, count: Int(min(size, 50)))
                + [UInt8](repeating: 0, count: Int(size > 50 ? size - 50 : 0)))
        #expect(f.read(f.lower(0) + "/big")?.count == 50)
    }
}
