import Foundation
import Glibc
import Testing

@testable import Union

/// READ keeps the descriptor it opened a cached file with (`readDescriptor`): these check that a kept descriptor is
/// used only while it holds the file the handle names now, and is let go when the file goes.
@Suite struct ReadDescriptorTests {
    private func opened(_ u: UnionNamespace) -> UInt64 { u.stats.readDescriptorsOpened.load(ordering: .relaxed) }

    /// Descriptors of this process open on the inode `st` describes.
    /// Descriptors of this process open on the file `st` describes, under `directory` (tests run in parallel: once
    /// the file is gone, another test's file may get its inode number, and hold it open).
    private func descriptorsOpen(on st: stat, under directory: String) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.compactMap(CInt.init).filter { fd in
            var s = stat()
            guard fstat(fd, &s) == 0, s.st_dev == st.st_dev, s.st_ino == st.st_ino else { return false }
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? ""
            return target.hasPrefix(directory + "/")
        }.count
    }

    @Test func repeatedReadsOpenTheFileOnce() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/data", "0123456789")
        let u = try f.open()
        let h = try u.h("data")
        let before = self.opened(u)
        for offset in [0, 4, 8] as [UInt64] {
            #expect(
                try u.read(h, offset: offset, count: 2, as: root).data
                    == Array("0123456789".utf8)[Int(offset)..<Int(offset) + 2].map { $0 })
        }
        #expect(self.opened(u) == before + 1)
    }

    @Test func readAfterCopyUpSeesTheUpperCopy() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/data", "lower bytes")
        let u = try f.open()
        #expect(try u.contents("data") == "lower bytes")
        try u.put("data", "UPPER")  // copies up, then writes the upper copy
        #expect(try u.contents("data") == "UPPER bytes")
        #expect(f.read(f.lower(0) + "/data") == "lower bytes")
    }

    @Test func readAfterWriteAndTruncateSeesTheNewBytes() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "data", "first version")
        let h = try u.h("data")
        #expect(try u.contents("data") == "first version")
        let before = self.opened(u)
        try u.put("data", "FIRST")
        #expect(try u.contents("data") == "FIRST version")
        _ = try u.setattr(h, SetAttributes(size: 3), guardCtime: nil, as: root)
        let r = try u.read(h, offset: 0, count: 100, as: root)
        #expect(r.data == Array("FIR".utf8) && r.isEOF)
        // In-place changes keep the file: no new descriptor was needed.
        #expect(self.opened(u) == before)
    }

    @Test func readOfANameReplacedByRenameSeesTheNewFile() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "a", "old a")
        try u.mkfile("", "b", "new b")
        let old = try u.h("a")
        #expect(try u.contents("a") == "old a")
        try u.rename(from: u.rootHandle, b("b"), to: u.rootHandle, b("a"), as: root)
        #expect(try u.contents("a") == "new b")
        #expect(throws: UnionError.stale) { try u.read(old, offset: 0, count: 10, as: root) }
    }

    @Test func readAfterTheFileWasReplacedOutsideSeesTheNewFile() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "data", "served")
        let h = try u.h("data")
        #expect(try u.contents("data") == "served")
        // Replaced behind the server's back: the kept descriptor holds the old inode and must not be used.
        f.file(f.upper + "/tree/data.new", "edited")
        #expect(Glibc.rename(f.upper + "/tree/data.new", f.upper + "/tree/data") == 0)
        let r = Result { () throws(UnionError) -> [UInt8] in try u.read(h, offset: 0, count: 10, as: root).data }
        #expect((try? r.get()) != Array("served".utf8))
    }

    @Test func removeLetsGoOfTheKeptDescriptor() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "data", "to be removed")
        #expect(try u.contents("data") == "to be removed")
        var st = stat()
        #expect(lstat(f.upper + "/tree/data", &st) == 0)
        #expect(self.descriptorsOpen(on: st, under: f.base) == 1)
        try u.remove(in: u.rootHandle, b("data"), as: root)
        // A removed file's blocks are freed only when its last descriptor closes.
        #expect(self.descriptorsOpen(on: st, under: f.base) == 0)
    }

    @Test func renameOverAReadFileLetsGoOfItsDescriptor() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "a", "replaced")
        try u.mkfile("", "b", "winner")
        #expect(try u.contents("a") == "replaced")
        var st = stat()
        #expect(lstat(f.upper + "/tree/a", &st) == 0)
        #expect(self.descriptorsOpen(on: st, under: f.base) == 1)
        try u.rename(from: u.rootHandle, b("b"), to: u.rootHandle, b("a"), as: root)
        #expect(self.descriptorsOpen(on: st, under: f.base) == 0)
    }

    @Test func closingTheNamespaceClosesKeptDescriptors() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/data", "lower")
        let u = try f.open()
        #expect(try u.contents("data") == "lower")
        var st = stat()
        #expect(lstat(f.lower(0) + "/data", &st) == 0)
        #expect(self.descriptorsOpen(on: st, under: f.base) == 1)
        u.close()
        #expect(self.descriptorsOpen(on: st, under: f.base) == 0)
    }
}
