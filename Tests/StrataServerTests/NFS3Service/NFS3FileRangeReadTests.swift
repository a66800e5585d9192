import Foundation
import Glibc
import NFS3
import NIOCore
import SunRPC
import Testing
import Union
import XDR

@testable import StrataServer

/// READs above `maxInlineReadBytes` over TCP, answered as a range of the file the RPC layer sends with sendfile
/// (`NFS3Outcome.successFromFile`): the same bytes, count, EOF and attributes as the copying reply, on the pool and
/// on the event loop.
@Suite struct NFS3FileRangeReadTests {
    static let size = 300_003
    static let content: String = {
        var bytes = [UInt8](repeating: 0, count: size)
        for index in 0..<size {
            let letter: Int = (index * 7 + index / 4096) % 26
            bytes[index] = UInt8(97 + letter)
        }
        return String(decoding: bytes, as: UTF8.self)
    }()

    func outcome(_ harness: NFS3Harness, _ args: Read3Args, fileRanges: Bool) -> NFS3Outcome {
        var arguments = xdrEncoded(args)
        return harness.service.handle(
            procedure: NFS3Procedure.read.rawValue, arguments: &arguments, logger: harness.logger,
            sendsFileRanges: fileRanges, resolve: harness.resolve)
    }

    func inlineOutcome(_ harness: NFS3Harness, _ args: Read3Args) -> NFS3Outcome? {
        harness.service.handleInline(
            procedure: NFS3Procedure.read.rawValue, arguments: xdrEncoded(args), sendsFileRanges: true,
            resolve: { try? harness.resolve($0).get() })
    }

    /// The bytes a file-range reply puts on the wire after the RPC header.
    func wireBytes(_ outcome: NFS3Outcome?) -> ByteBuffer? {
        switch outcome {
        case .success(let buffer)?: return buffer
        case .successFromFile(let results)?: return results.joined()
        default: return nil
        }
    }

    @Test func fileRangeReplyIsTheCopyingReply() throws {
        let harness = try NFS3Harness(lowerFiles: ["data": Self.content])
        Self.settleAccessTime(harness.base + "/lower/data")
        let file = try harness.handle("data")
        // The first READ opens (and keeps) the descriptor, on the pool.
        _ = self.outcome(harness, Read3Args(file: file, offset: 0, count: 1), fileRanges: false)
        let cases: [(UInt64, UInt32)] = [
            (0, 65537), (1, 100_001), (4096, 131_072), (UInt64(Self.size) - 70_000, 70_000),
            (UInt64(Self.size) - 70_001, 131_072), (200_000, 2 << 20),
        ]
        for (offset, count) in cases {
            let args = Read3Args(file: file, offset: offset, count: count)
            let copied = self.outcome(harness, args, fileRanges: false)
            guard case .success = copied else {
                Issue.record("copying READ failed: \(copied)")
                continue
            }
            let pool = self.outcome(harness, args, fileRanges: true)
            guard case .successFromFile(let results) = pool else {
                Issue.record("\(offset)+\(count): not sent from the file: \(pool)")
                continue
            }
            #expect(self.wireBytes(pool) == self.wireBytes(copied), "\(offset)+\(count)")
            #expect((results.head.readableBytes + results.count + results.tail.readableBytes) % 4 == 0)
            let inline = try #require(self.inlineOutcome(harness, args), "\(offset)+\(count): declined inline")
            guard case .successFromFile = inline else {
                Issue.record("\(offset)+\(count): inline not sent from the file: \(inline)")
                continue
            }
            #expect(self.wireBytes(inline) == self.wireBytes(copied), "\(offset)+\(count)")
            var decoded = try #require(self.wireBytes(inline))
            guard case .ok(let ok) = try Read3Res(xdr: &decoded) else {
                Issue.record("not OK")
                continue
            }
            let start = Int(offset)
            let end = min(Self.size, start + min(Int(count), harness.service.limits.maxReadBytes))
            #expect(ok.data.readableBytesView.elementsEqual(Array(Self.content.utf8)[start..<end]))
            #expect(ok.eof == (end == Self.size) && Int(ok.count) == end - start && decoded.readableBytes == 0)
        }

        // Nothing to send (at or past the end), small READs and other transports: the copying reply.
        for (offset, count) in [(UInt64(Self.size), 100_000), (UInt64(Self.size) + 5, 100_000), (0, 4096)]
            as [(UInt64, UInt32)]
        {
            let args = Read3Args(file: file, offset: offset, count: count)
            guard case .success = self.outcome(harness, args, fileRanges: true) else {
                Issue.record("\(offset)+\(count) not copied")
                continue
            }
        }
        let large = Read3Args(file: file, offset: 0, count: 100_000)
        guard case .success = self.outcome(harness, large, fileRanges: false) else {
            Issue.record("a transport that does not send from files got a file range")
            return
        }
        #expect(
            harness.service.handleInline(
                procedure: NFS3Procedure.read.rawValue, arguments: xdrEncoded(large), sendsFileRanges: false,
                resolve: { try? harness.resolve($0).get() }) == nil)
    }

    /// Gives `path` an access time later than its modification and change times and within a day, so that reading it
    /// leaves the access time as it is (relatime; a fresh file's would move on its first read, which is copied).
    static func settleAccessTime(_ path: String) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var times = [timespec(tv_sec: now.tv_sec + 60, tv_nsec: 0), timespec(tv_sec: now.tv_sec - 3600, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }

    /// A READ that would move the access time is copied (its reply then shows the time the read set).
    @Test func readThatMovesTheAccessTimeIsCopied() throws {
        let harness = try NFS3Harness(lowerFiles: ["data": Self.content])
        let path = harness.base + "/lower/data"
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var times = [timespec(tv_sec: now.tv_sec - 7200, tv_nsec: 0), timespec(tv_sec: now.tv_sec - 3600, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        let file = try harness.handle("data")
        _ = self.outcome(harness, Read3Args(file: file, offset: 0, count: 1), fileRanges: false)
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)  // the first READ moved it: back before the change
        let outcome = self.outcome(harness, Read3Args(file: file, offset: 0, count: 100_000), fileRanges: true)
        guard case .success = outcome else {
            Issue.record("sent from the file although the read moves the access time: \(outcome)")
            return
        }
    }

    /// Refusals are the copying path's answers, and a file whose pages were dropped is read (copied), not sent.
    @Test func refusalsAndUncachedDataAreCopied() throws {
        let harness = try NFS3Harness(lowerFiles: ["data": Self.content, "dir/x": "x"])
        Self.settleAccessTime(harness.base + "/lower/data")
        let file = try harness.handle("data")
        let dir = try harness.handle("dir")
        let args = Read3Args(file: dir, offset: 0, count: 100_000)
        #expect(self.outcome(harness, args, fileRanges: true) == self.outcome(harness, args, fileRanges: false))
        #expect(self.inlineOutcome(harness, args) == nil)

        _ = self.outcome(harness, Read3Args(file: file, offset: 0, count: 1), fileRanges: false)
        let fd = open(harness.base + "/lower/data", O_RDONLY)
        defer { close(fd) }
        #expect(fdatasync(fd) == 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0)
        let read = Read3Args(file: file, offset: 0, count: UInt32(Self.size))
        let outcome = self.outcome(harness, read, fileRanges: true)
        // The kernel may have read the pages back at once; either way the bytes are the file's.
        var decoded = try #require(self.wireBytes(outcome))
        guard case .ok(let ok) = try Read3Res(xdr: &decoded) else {
            Issue.record("not OK: \(outcome)")
            return
        }
        #expect(ok.data.readableBytesView.elementsEqual(Array(Self.content.utf8)) && ok.eof)
    }
}
