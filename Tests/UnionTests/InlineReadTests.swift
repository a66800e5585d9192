import Foundation
import Glibc
import Synchronization
import Testing

@testable import Union

/// `readIfCached`: a READ the event loop may answer, from the page cache through the kept descriptor, never waiting
/// for the disk; anything else is declined and read on the pool (`read`), with the same bytes.
@Suite struct InlineReadTests {
    /// The pattern byte at `offset` (not periodic in 4 KiB pages, so a page read from the wrong offset shows).
    static func byte(at offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: offset &* 7 &+ offset >> 11) }

    static func pattern(_ count: Int, from offset: Int = 0) -> [UInt8] { (offset..<offset + count).map(byte(at:)) }

    /// A file of `size` pattern bytes in the lower layer of a fixture on a disk file system (the page cache may then
    /// be dropped: a tmpfs has nothing else to read from).
    /// A lower file "data" of `size` bytes, its namespace open and its descriptor kept by a first READ from the pool.
    static func openedLowerFile(size: Int) throws -> (Fixture, UnionNamespace, ObjectHandle) {
        let f = Fixture()
        Self.lowerFile(f, "data", size: size)
        let u = try f.open()
        let h = try u.h("data")
        _ = try Self.pool(u, h, offset: 0, count: 1)
        return (f, u, h)
    }

    static func lowerFile(_ f: Fixture, _ name: String, size: Int) {
        f.file(f.lower(0) + "/" + name)
        let fd = open(f.lower(0) + "/" + name, O_WRONLY)
        defer { close(fd) }
        let data = Self.pattern(size)
        #expect(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == size)
        #expect(fsync(fd) == 0)
    }

    static func inline(
        _ u: UnionNamespace, _ h: ObjectHandle, offset: UInt64, count: Int, as cred: Credentials = .root
    ) -> (data: [UInt8], result: ReadResult)? {
        var data = [UInt8](repeating: 0, count: count)
        let result = data.withUnsafeMutableBytes { u.readIfCached(h, offset: offset, into: $0, as: cred) }
        guard let result else { return nil }
        return (Array(data[0..<result.count]), result)
    }

    static func pool(
        _ u: UnionNamespace, _ h: ObjectHandle, offset: UInt64, count: Int, as cred: Credentials = .root
    ) throws(UnionError) -> (data: [UInt8], result: ReadResult) {
        var data = [UInt8](repeating: 0, count: count)
        let result = data.withUnsafeMutableBytes { buffer in
            Result { () throws(UnionError) -> ReadResult in try u.read(h, offset: offset, into: buffer, as: cred) }
        }
        let got = try result.get()
        return (Array(data[0..<got.count]), got)
    }

    /// A warm file whose descriptor READ keeps is answered inline, exactly as the pool answers (bytes, count, EOF,
    /// attributes), at its start, across its end and past it; before its first READ (no kept descriptor) and for
    /// what the pool would refuse, declined.
    @Test func answersWarmKeptFilesAsThePoolDoes() throws {
        let f = Fixture()
        let size = 300_000
        Self.lowerFile(f, "data", size: size)
        f.file(f.lower(0) + "/secret", "x", mode: 0o600, uid: 0)
        f.mkdir(f.lower(0) + "/dir")
        let u = try f.open()
        defer { u.close() }
        let h = try u.h("data")
        #expect(Self.inline(u, h, offset: 0, count: 4096) == nil, "no descriptor kept yet: opening is the pool's")
        _ = try Self.pool(u, h, offset: 0, count: 1)  // opens and keeps the descriptor; the file is in the page cache
        for (offset, count) in [
            (0, 4096), (5000, 131_072), (size - 1000, 65536), (size, 4096), (size + 10, 10), (0, 0),
        ] {
            let inline = try #require(Self.inline(u, h, offset: UInt64(offset), count: count), "\(offset)+\(count)")
            let pool = try Self.pool(u, h, offset: UInt64(offset), count: count)
            #expect(inline.data == pool.data && inline.data == Self.pattern(pool.data.count, from: offset))
            #expect(inline.result.count == pool.result.count && inline.result.isEOF == pool.result.isEOF)
            #expect(inline.result.attributes == pool.result.attributes)
        }
        #expect(Self.inline(u, h, offset: UInt64(Int64.max), count: 10)?.result.isEOF == true, "past any file's end")

        let user = Credentials(uid: 1000, gid: 1000, groups: [])
        let secret = try u.h("secret")
        _ = try Self.pool(u, secret, offset: 0, count: 1)
        #expect(Self.inline(u, secret, offset: 0, count: 1, as: user) == nil, "refused: the pool answers ACCES")
        #expect(throws: UnionError.accessDenied) { try Self.pool(u, secret, offset: 0, count: 1, as: user) }
        #expect(Self.inline(u, try u.h("dir"), offset: 0, count: 1) == nil)

        // A change holds the lock: declined, not waited for.
        #expect(u.namespaceLock.tryWriteLock())
        #expect(Self.inline(u, h, offset: 0, count: 10) == nil)
        u.namespaceLock.unlockWrite()
        #expect(Self.inline(u, ObjectHandle(fileid: h.fileid, tag: h.tag ^ 1), offset: 0, count: 10) == nil)
        #expect(Self.inline(u, h, offset: 0, count: 10) != nil)
    }

    /// Data not in the page cache is declined (the event loop must not wait for the disk) and the pool's READ gives
    /// the bytes. Dropping a file's pages is a request the kernel may partly refuse, and the declined read may itself
    /// start readahead that completes at once: the inline answer is then complete and must be right.
    @Test func uncachedDataIsLeftToThePoolWithTheSameBytes() throws {
        let size = 4 << 20
        let (f, u, h) = try Self.openedLowerFile(size: size)
        defer { u.close() }
        let fd = open(f.lower(0) + "/data", O_RDONLY)
        defer { close(fd) }
        var declined = 0
        for offset in stride(from: 0, to: size, by: 1 << 20) {
            #expect(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0)
            let before = u.stats.readsNotCached.load(ordering: .relaxed)
            let inline = Self.inline(u, h, offset: UInt64(offset), count: 1 << 20)
            let pool = try Self.pool(u, h, offset: UInt64(offset), count: 1 << 20)
            #expect(pool.data == Self.pattern(1 << 20, from: offset))
            if let inline {
                #expect(inline.data == pool.data && inline.result.count == pool.result.count)
            } else {
                declined += 1
                #expect(u.stats.readsNotCached.load(ordering: .relaxed) == before + 1)
            }
        }
        #expect(declined > 0, "no READ of a just dropped file was declined")
    }

    /// The file is truncated and grown again (outside the server, in place) while READs are answered inline: every
    /// answer is a prefix of what the file held at that offset (a read that met the truncation is short), never bytes
    /// from elsewhere, and never more than was asked.
    @Test func concurrentTruncationGivesShortReadsOfTheRightBytes() throws {
        let size = 256 << 10
        let (f, u, h) = try Self.openedLowerFile(size: size)
        defer { u.close() }
        let whole = Self.pattern(size)
        let flags = Flags()
        let changer = Thread {
            let fd = open(f.lower(0) + "/data", O_WRONLY)
            defer { close(fd) }
            let tail = Array(whole[(size / 2)...])
            let head = Array(whole[(size / 4)..<(size / 2)])
            while !flags.done.load(ordering: .relaxed) {
                _ = ftruncate(fd, off_t(size / 4))
                _ = tail.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(size / 2)) }
                _ = head.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(size / 4)) }
                flags.cycles.add(1, ordering: .relaxed)
            }
        }
        changer.start()
        var answered = 0
        var i = 0
        // Until both sides did enough (the changer always progresses: bounded).
        while i < 300 || flags.cycles.load(ordering: .relaxed) < 20 {
            let offset = (i * 12_288) % size
            i += 1
            guard let r = Self.inline(u, h, offset: UInt64(offset), count: 65536) else { continue }
            answered += 1
            #expect(r.result.count <= 65536)
            // The truncation leaves zeros only where the file grew again (a hole until its bytes are written back);
            // everything else is the pattern.
            let wrong = r.data.withUnsafeBufferPointer { data in
                whole.withUnsafeBufferPointer { expected in
                    data.indices.first { j in
                        data[j] != expected[offset + j] && !(data[j] == 0 && offset + j >= size / 4)
                    }
                }
            }
            #expect(wrong == nil, "offset \(offset) + \(wrong ?? 0)")
        }
        flags.done.store(true, ordering: .relaxed)
        while !changer.isFinished { sched_yield() }
        #expect(answered > 0)
        let final = try Self.pool(u, h, offset: 0, count: size)
        #expect(final.data == whole, "the file ends complete again")
    }
}

private final class Flags: Sendable {
    let done = Atomic<Bool>(false)
    let cycles = Atomic<Int>(0)
}

/// `Sys.fillWithoutWaiting`: the loop behind `preadWithoutWaiting`, driven by a fake `preadv2`.
@Suite struct ReadWithoutWaitingTests {
    /// Replays `steps` (bytes, or a negative errno) one call at a time and records the offsets asked.
    final class FakeRead {
        var steps: [Int]
        var asked: [Int] = []
        init(_ steps: [Int]) { self.steps = steps }
        func call(_ done: Int) -> Int {
            self.asked.append(done)
            let step = self.steps.removeFirst()
            if step < 0 {
                errno = CInt(-step)
                return -1
            }
            return step
        }
    }

    @Test func completeOnlyWhenEveryByteWasCached() {
        let whole = FakeRead([100])
        #expect(Sys.fillWithoutWaiting(100, whole.call) == 100)
        let pieces = FakeRead([40, 60])
        #expect(Sys.fillWithoutWaiting(100, pieces.call) == 100 && pieces.asked == [0, 40])
        let end = FakeRead([30, 0])
        #expect(Sys.fillWithoutWaiting(100, end.call) == 30, "the file ends: a complete short read")
        let interrupted = FakeRead([-Int(EINTR), 100])
        #expect(Sys.fillWithoutWaiting(100, interrupted.call) == 100)
        #expect(Sys.fillWithoutWaiting(0, FakeRead([]).call) == 0)
    }

    @Test func partlyCachedRangesAreDeclinedNotAnsweredShort() {
        #expect(Sys.fillWithoutWaiting(100, FakeRead([-Int(EAGAIN)]).call) == nil)
        let partial = FakeRead([64, -Int(EAGAIN)])
        #expect(Sys.fillWithoutWaiting(100, partial.call) == nil, "a partial read would be a short READ")
        #expect(Sys.fillWithoutWaiting(100, FakeRead([-Int(EOPNOTSUPP)]).call) == nil, "no RWF_NOWAIT here")
        #expect(Sys.fillWithoutWaiting(100, FakeRead([-Int(EIO)]).call) == nil, "the pool reports errors")
    }
}
