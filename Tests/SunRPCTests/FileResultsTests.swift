import Foundation
import Glibc
import NIOCore
import SunRPCClient
import TestSupport
import Testing
import XDR

@testable import SunRPC

/// A program whose procedure 1 (uint32 offset, uint32 count) answers `count` bytes of its file at `offset` as
/// results sent from the file: the count, the bytes, XDR padding. It trusts the range, as a program that checked
/// the file's size does.
final class FileProgram: RPCProgramHandler {
    static let number: UInt32 = 0x2000_0102
    let program = FileProgram.number
    let versions: ClosedRange<UInt32> = 1...1
    let path: String

    init(path: String) { self.path = path }

    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        guard call.procedure == 1 else { return call.procedure == 0 ? .success(ByteBuffer()) : .procedureUnavailable }
        guard let offset = try? arguments.readXDRUInt32(), let count = try? arguments.readXDRUInt32() else {
            return .garbageArguments
        }
        let fd = open(self.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .systemError }
        var head = ByteBuffer()
        head.writeXDR(count)
        var tail = ByteBuffer()
        tail.writeRepeatingByte(0, count: (4 - Int(count) % 4) % 4)
        return .successFromFile(
            RPCFileResults(
                head: head, file: RPCReplyFile(takingOwnershipOf: fd), offset: Int(offset), count: Int(count),
                tail: tail))
    }
}

@Suite struct FileResultsTests {
    static func byte(at offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: offset &* 13 &+ offset >> 12) }

    static func makeFile(_ directory: String, size: Int) throws -> String {
        let path = directory + "/data"
        let bytes = (0..<size).map(Self.byte(at:))
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func arguments(_ offset: Int, _ count: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeXDR(UInt32(offset))
        buffer.writeXDR(UInt32(count))
        return buffer
    }

    /// Over TCP the range goes out with sendfile between the head and the tail; over UDP it is read into the
    /// datagram. Either way the client gets exactly the head, the file's bytes and the padding, reply after reply on
    /// one connection (a range between replies of bytes keeps their order).
    @Test(arguments: RPCTransport.allCases)
    func rangeArrivesBetweenHeadAndTail(transport: RPCTransport) async throws {
        let directory = try makeTemporaryDirectory("strata-file-results")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let size = 3 << 20
        let path = try Self.makeFile(directory, size: size)
        try await withTestServer(programs: [FileProgram(path: path), TestProgram()]) { server in
            let client = try server.client(transport, timeout: .seconds(60))
            let cases: [(Int, Int)] =
                transport == .tcp
                ? [(0, 1 << 20), (1, 100_001), (4095, 3), (size - 2, 2), (17, 0), (12_345, 2 << 20)]
                : [(0, 8192), (1, 10_001), (size - 3, 3), (5, 0)]
            for (offset, count) in cases {
                let reply = try client.call(
                    program: FileProgram.number, version: 1, procedure: 1, arguments: Self.arguments(offset, count))
                #expect(reply.status == .success)
                var body = reply.body
                #expect(try body.readXDRUInt32() == UInt32(count))
                let data = body.readBytes(length: count)
                #expect(data == (offset..<offset + count).map(Self.byte(at:)), "\(offset)+\(count)")
                #expect(body.readableBytes == (4 - count % 4) % 4)
                #expect(body.readBytes(length: body.readableBytes)?.allSatisfy { $0 == 0 } == true)
                let echo = try client.call(program: TestProgram.number, version: 1, procedure: 0)
                #expect(echo.status == .success)
            }
        }
    }

    /// The file is truncated while its range is being sent (the client reads nothing, so the send waits): the range
    /// can no longer be sent whole, and the connection closes before the record is complete, rather than hang or
    /// deliver a record whose length disagrees with its bytes.
    @Test func truncationDuringTheSendClosesTheConnection() async throws {
        let directory = try makeTemporaryDirectory("strata-file-results")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let size = 12 << 20
        let path = try Self.makeFile(directory, size: size)
        try await withTestServer(programs: [FileProgram(path: path)]) { server in
            let port = server.port
            let outcome = await onThread { () -> (received: Int, recordBytes: Int, closed: Bool) in
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var small: CInt = 4096
                _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<CInt>.size))
                var timeout = timeval(tv_sec: 60, tv_usec: 0)
                _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                    }
                }
                guard connected else { return (0, 0, false) }
                var call = fragmented(
                    callMessage(
                        xid: 7, program: FileProgram.number, procedure: 1, arguments: Self.arguments(0, size)),
                    fragmentBytes: 1 << 20)
                let sent = call.readWithUnsafeReadableBytes { send(fd, $0.baseAddress, $0.count, 0) }
                guard sent > 0 else { return (0, 0, false) }
                // The record mark arrives first: the send has started, and most of the range cannot have left
                // (the socket buffers hold a few MiB at most).
                var mark: UInt32 = 0
                guard recv(fd, &mark, 4, Int32(MSG_WAITALL)) == 4 else { return (0, 0, false) }
                let recordBytes = Int(UInt32(bigEndian: mark) & 0x7fff_ffff)
                _ = truncate(path, 0)
                var received = 0
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let r = recv(fd, &buffer, buffer.count, 0)
                    if r > 0 {
                        received += r
                        continue
                    }
                    // 0: closed by the server; ECONNRESET: closed with data unsent. A timeout is not a close.
                    return (received, recordBytes, r == 0 || errno == ECONNRESET)
                }
            }
            #expect(outcome.closed, "the connection stayed open")
            #expect(outcome.received < outcome.recordBytes, "a whole record arrived: \(outcome)")
        }
    }
}
