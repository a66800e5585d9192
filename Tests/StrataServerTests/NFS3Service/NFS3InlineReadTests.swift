import Foundation
import Glibc
import Logging
import NFS3
import NIOCore
import SunRPC
import Testing
import Union
import XDR

@testable import StrataServer

/// READ answered on the event loop (`NFS3Service.handleInline`): only small ones, only from the page cache, and then
/// byte for byte the pool's reply.
@Suite struct NFS3InlineReadTests {
    static let content = String((0..<20_000).map { Character(UnicodeScalar(UInt8(97 + $0 % 26))) })

    @Test func inlineReadIsThePoolsReply() throws {
        let harness = try NFS3Harness(lowerFiles: ["dir/data": Self.content])
        let file = try harness.handle("data", in: try harness.handle("dir"))
        let args = Read3Args(file: file, offset: 100, count: 8192)
        #expect(harness.inlineOutcome(.read, args) == nil, "the first READ opens the file, on the pool")
        let pool = harness.outcome(.read, args)
        for (offset, count) in [(100, 8192), (0, 0), (19_990, 100), (30_000, 10), (0, 65536)] as [(UInt64, UInt32)] {
            let args = Read3Args(file: file, offset: offset, count: count)
            let inline = try #require(harness.inlineOutcome(.read, args), "\(offset)+\(count)")
            #expect(inline == harness.outcome(.read, args), "\(offset)+\(count)")
        }
        guard case .success(var reply) = pool, case .ok(let ok) = try Read3Res(xdr: &reply) else {
            Issue.record("READ failed: \(pool)")
            return
        }
        #expect(ok.data.readableBytesView.elementsEqual(Array(Self.content.utf8)[100..<8292]) && !ok.eof)
        let large = Read3Args(file: file, offset: 0, count: harness.service.limits.maxInlineReadBytes + 1)
        #expect(harness.inlineOutcome(.read, large) == nil, "a large READ's copy runs on the pool")

        // Refusals and failures are the pool's to answer (with their log lines): a directory, bad arguments.
        #expect(harness.inlineOutcome(.read, Read3Args(file: try harness.handle("dir"), offset: 0, count: 1)) == nil)
        #expect(
            harness.service.handleInline(
                procedure: NFS3Procedure.read.rawValue, arguments: ByteBuffer(bytes: [0, 0, 0]),
                resolve: { try? harness.resolve($0).get() }) == nil)
    }

    /// A file whose pages were dropped: the inline READ declines (or, if the kernel kept or read them back at once,
    /// answers the same bytes), and the pool's reply carries the file's bytes.
    @Test func uncachedReadFallsBackToThePool() throws {
        let harness = try NFS3Harness(lowerFiles: ["data": Self.content])
        let file = try harness.handle("data")
        _ = harness.outcome(.read, Read3Args(file: file, offset: 0, count: 1))
        let fd = open(harness.base + "/lower/data", O_RDONLY)
        defer { close(fd) }
        #expect(fdatasync(fd) == 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0)
        let args = Read3Args(file: file, offset: 0, count: 20_000)
        let inline = harness.inlineOutcome(.read, args)
        let pool = harness.outcome(.read, args)
        if let inline { #expect(inline == pool) }
        guard case .success(var reply) = pool, case .ok(let ok) = try Read3Res(xdr: &reply) else {
            Issue.record("READ failed: \(pool)")
            return
        }
        #expect(ok.data.readableBytesView.elementsEqual(Array(Self.content.utf8)) && ok.eof)
    }

    @Test func readIsOfferedInline() {
        struct NoResolver: NFS3HandleResolver {
            func resolve(
                fileHandle: [UInt8], for call: RPCCallContext
            ) -> Result<(ExportCall, ObjectHandle), CallRejection> { .failure(.badHandle) }
        }
        let program = NFS3Program(
            resolver: NoResolver(), writeVerifier: 1, logger: .init(label: "t") { _ in SwiftLogNoOpLogHandler() })
        #expect(program.mayAnswerInline(version: 3, procedure: NFS3Procedure.read.rawValue))
        #expect(!program.mayAnswerInline(version: 3, procedure: NFS3Procedure.write.rawValue))
    }
}
