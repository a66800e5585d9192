import NFS3
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import SunRPC
import Testing
import XDR

@testable import NFS3Client

#if canImport(Glibc)
import Glibc
#endif

/// An `RPCConnection` on an `EmbeddedChannel`: the test plays the server by reading the
/// calls written and writing replies in.
struct EmbeddedRPC {
    let channel: EmbeddedChannel
    let connection: RPCConnection

    init(
        timeout: TimeAmount? = nil,
        credential: RPCCredential = .unix(uid: 1000, gid: 100, groups: [4, 27], machineName: "host")
    ) throws {
        self.channel = EmbeddedChannel()
        try self.channel.pipeline.syncOperations.addHandler(RPCClientHandler(firstXID: 100, timeout: timeout))
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2049)).wait()
        self.connection = RPCConnection(channel: self.channel, credential: credential)
    }

    /// The next call written: its record (record mark checked and stripped).
    func nextCall() throws -> ByteBuffer {
        var bytes = ByteBuffer()
        while var part = try self.channel.readOutbound(as: ByteBuffer.self) {
            bytes.writeBuffer(&part)
        }
        let mark = try #require(bytes.getInteger(at: bytes.readerIndex, endianness: .big, as: UInt32.self))
        bytes.moveReaderIndex(forwardBy: 4)
        #expect(mark & 0x8000_0000 != 0, "one fragment per call, marked last")
        #expect(Int(mark & 0x7fff_ffff) == bytes.readableBytes, "record mark length matches the record")
        return bytes
    }

    /// Writes a reply record for `xid`: accepted, SUCCESS, then `results`.
    func reply(xid: UInt32, results: (inout ByteBuffer) -> Void) throws {
        var body = ByteBuffer()
        body.writeXDR(xid)
        body.writeXDR(UInt32(1))  // REPLY
        body.writeXDR(UInt32(0))  // MSG_ACCEPTED
        body.writeXDR(UInt32(0))  // verifier AUTH_NONE
        body.writeXDR(UInt32(0))
        body.writeXDR(UInt32(0))  // SUCCESS
        results(&body)
        try self.writeRecord(body)
    }

    func writeRecord(_ body: ByteBuffer) throws {
        var record = ByteBuffer()
        record.writeInteger(0x8000_0000 | UInt32(body.readableBytes), endianness: .big)
        record.writeImmutableBuffer(body)
        try self.channel.writeInbound(record)
    }
}

/// The result of a future that must already be complete (embedded loop: no waiting).
func completed<Value: Sendable>(_ future: EventLoopFuture<Value>) throws -> Result<Value, Error> {
    try #require(outcome(future), "the future is not complete")
}

/// The result of a future, or nil while it is pending.
func outcome<Value: Sendable>(_ future: EventLoopFuture<Value>) -> Result<Value, Error>? {
    let box = NIOLockedValueBox<Result<Value, Error>?>(nil)
    future.whenComplete { result in box.withLockedValue { $0 = result } }
    return box.withLockedValue { $0 }
}

@Suite struct RPCConnectionTests {
    @Test func callIsEncodedWithRecordMarkXidAndCredential() throws {
        let rpc = try EmbeddedRPC()
        let handle = FileHandle3([1, 2, 3, 4, 5])
        _ = rpc.connection.call(program: NFS3.program, version: 3, procedure: NFS3Procedure.getattr.rawValue) {
            GetAttr3Args(object: handle).encode(xdr: &$0)
        }
        var call = try rpc.nextCall()
        #expect(try call.readXDRUInt32() == 100)  // first xid
        #expect(try call.readXDRUInt32() == 0)  // CALL
        #expect(try call.readXDRUInt32() == 2)  // rpcvers
        #expect(try call.readXDRUInt32() == NFS3.program)
        #expect(try call.readXDRUInt32() == 3)
        #expect(try call.readXDRUInt32() == NFS3Procedure.getattr.rawValue)
        #expect(try call.readXDRUInt32() == AuthFlavor.sys)
        var body = try call.readXDRVariableOpaqueSlice(maxLength: 400)
        let parameters = try AuthSysParameters(xdr: &body)
        #expect(parameters == AuthSysParameters(machineName: "host", uid: 1000, gid: 100, groups: [4, 27]))
        #expect(try call.readXDRUInt32() == AuthFlavor.none)  // verifier
        #expect(try call.readXDRUInt32() == 0)
        #expect(try GetAttr3Args(xdr: &call) == GetAttr3Args(object: handle))
        #expect(call.readableBytes == 0)
    }

    @Test func payloadFollowsArgumentsWithPadding() throws {
        let rpc = try EmbeddedRPC()
        let client = NFS3Client(
            rpc: rpc.connection, host: "127.0.0.1", mountPort: nil, sourceAddress: nil, sourcePort: .any, timeout: nil,
            group: rpc.channel.embeddedEventLoop)
        let data = ByteBuffer(bytes: [9, 8, 7, 6, 5])
        _ = client.writeCall(FileHandle3([7]), offset: 4096, data: data, stable: .unstable)
        var call = try rpc.nextCall()
        call.moveReaderIndex(forwardBy: 28)  // xid ... procedure, credential flavor
        _ = try call.readXDRVariableOpaqueSlice(maxLength: 400)
        call.moveReaderIndex(forwardBy: 8)
        let args = try Write3Args(xdr: &call)
        #expect(args.file == FileHandle3([7]))
        #expect(args.offset == 4096)
        #expect(args.count == 5)
        #expect(args.stable == .unstable)
        #expect(args.data == data)
        #expect(call.readableBytes == 0)
    }

    @Test func repliesOutOfOrderReachTheirCalls() throws {
        let rpc = try EmbeddedRPC()
        var futures: [EventLoopFuture<ByteBuffer>] = []
        var xids: [UInt32] = []
        for i in 0..<5 {
            futures.append(rpc.connection.call(program: 1, version: 1, procedure: 1) { $0.writeXDR(UInt32(i)) })
            var call = try rpc.nextCall()
            xids.append(try call.readXDRUInt32())
        }
        #expect(Set(xids).count == 5, "every call in flight has its own xid")
        // The server answers in another order, each reply carrying its call's index * 10.
        for i in [3, 0, 4, 2, 1] {
            try rpc.reply(xid: xids[i]) { $0.writeXDR(UInt32(i * 10)) }
        }
        for i in 0..<5 {
            var body = try completed(futures[i]).get()
            #expect(try body.readXDRUInt32() == UInt32(i * 10))
        }
    }

    @Test func replyToUnknownXidIsIgnored() throws {
        let rpc = try EmbeddedRPC()
        let future = rpc.connection.call(program: 1, version: 1, procedure: 1) { _ in }
        var call = try rpc.nextCall()
        let xid = try call.readXDRUInt32()
        try rpc.reply(xid: xid &+ 999) { $0.writeXDR(UInt32(1)) }
        #expect(outcome(future) == nil)
        try rpc.reply(xid: xid) { $0.writeXDR(UInt32(2)) }
        var body = try completed(future).get()
        #expect(try body.readXDRUInt32() == 2)
    }

    @Test func closeMidRequestFailsEveryOutstandingCall() throws {
        let rpc = try EmbeddedRPC()
        let futures = (0..<3).map { _ in rpc.connection.call(program: 1, version: 1, procedure: 1) { _ in } }
        try rpc.channel.close().wait()
        for future in futures {
            #expect(throws: NFS3ClientError.connectionClosed) { try completed(future).get() }
        }
        // A call after the close fails at once too.
        let late = rpc.connection.call(program: 1, version: 1, procedure: 1) { _ in }
        #expect(throws: NFS3ClientError.self) { try completed(late).get() }
    }

    @Test func malformedReplyFailsCallsAndClosesTheConnection() throws {
        let rpc = try EmbeddedRPC()
        let future = rpc.connection.call(program: 1, version: 1, procedure: 1) { _ in }
        var garbage = ByteBuffer()
        garbage.writeXDR(UInt32(1))
        garbage.writeXDR(UInt32(0))  // msg_type CALL where a REPLY belongs
        try? rpc.writeRecord(garbage)
        let result = try completed(future)
        guard case .failure(NFS3ClientError.malformedReply) = result else {
            Issue.record("expected malformedReply, got \(result)")
            return
        }
        #expect(!rpc.channel.isActive)
    }

    @Test func rpcRefusalsAreTyped() throws {
        let rpc = try EmbeddedRPC()
        let future = rpc.connection.call(program: 1, version: 1, procedure: 1) { _ in }
        var call = try rpc.nextCall()
        let xid = try call.readXDRUInt32()
        var body = ByteBuffer()
        body.writeXDR(xid)
        body.writeXDR(UInt32(1))  // REPLY
        body.writeXDR(UInt32(1))  // MSG_DENIED
        body.writeXDR(UInt32(1))  // AUTH_ERROR
        body.writeXDR(AuthStat.tooWeak.rawValue)
        try rpc.writeRecord(body)
        #expect(throws: NFS3ClientError.rpc(.authError(.tooWeak))) { try completed(future).get() }
    }

    @Test func callWithoutReplyTimesOut() throws {
        let rpc = try EmbeddedRPC(timeout: .seconds(2))
        let future = rpc.connection.call(program: 1, version: 1, procedure: 1) { _ in }
        rpc.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1900))
        #expect(outcome(future) == nil, "not before the timeout")
        rpc.channel.embeddedEventLoop.advanceTime(by: .milliseconds(700))
        #expect(throws: NFS3ClientError.timedOut) { try completed(future).get() }
    }

    @Test func nfsErrorStatusIsAValueInCallAndThrownByOk() throws {
        let rpc = try EmbeddedRPC()
        let client = NFS3Client(
            rpc: rpc.connection, host: "127.0.0.1", mountPort: nil, sourceAddress: nil, sourcePort: .any, timeout: nil,
            group: rpc.channel.embeddedEventLoop)
        let future = client.call(
            .lookup, Lookup3Args(what: DirOpArgs3(dir: FileHandle3([1]), name: Array("x".utf8))), as: Lookup3Res.self)
        var call = try rpc.nextCall()
        let xid = try call.readXDRUInt32()
        try rpc.reply(xid: xid) { Lookup3Res.fail(.noent, Lookup3ResFail(dirAttributes: .absent)).encode(xdr: &$0) }
        let result = try completed(future).get()
        #expect(result.status == .noent)
        #expect(throws: NFS3ClientError.nfs(.noent, procedure: .lookup)) { try result.ok(.lookup) }
    }
}

/// Over real sockets on loopback: a server that reads calls and never answers, then closes.
@Suite struct RPCConnectionSocketTests {
    @Test func peerClosingMidRequestFailsTheCallInsteadOfHanging() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                // Close as soon as anything arrives: the call is in flight.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(CloseOnRead())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let port = try #require(server.localAddress?.port)
        let connection = try await RPCConnection.connect(
            host: "127.0.0.1", port: port, sourceAddress: "127.0.0.9", credential: .none, timeout: .seconds(60),
            group: group
        ).get()
        #expect(connection.localAddress?.ipAddress == "127.0.0.9")
        let call = connection.call(program: 1, version: 1, procedure: 0) { _ in }
        await #expect(throws: NFS3ClientError.connectionClosed) { try await call.get() }
    }

    @Test func connectToAPortWithoutListenerFailsWithConnectFailed() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // A socket bound but not listening holds the port (no other test can take it) and
        // refuses connections.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        await #expect {
            _ = try await RPCConnection.connect(host: "127.0.0.1", port: port, credential: .none, group: group).get()
        } throws: { error in
            if case NFS3ClientError.connectFailed = error { return true }
            return false
        }
    }
}

final class CloseOnRead: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.close(promise: nil)
    }
}

@Suite struct ReplyReassemblerTests {
    /// A record-marked stream of `records`, each cut into fragments of at most `fragmentBytes`.
    static func stream(_ records: [[UInt8]], fragmentBytes: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for record in records {
            var offset = 0
            repeat {
                let count = min(fragmentBytes, record.count - offset)
                let last = offset + count == record.count
                let word = (last ? 0x8000_0000 : 0) | UInt32(count)
                bytes += [UInt8(word >> 24), UInt8(word >> 16 & 0xff), UInt8(word >> 8 & 0xff), UInt8(word & 0xff)]
                bytes += record[offset..<offset + count]
                offset += count
            } while offset < record.count
        }
        return bytes
    }

    @Test(arguments: [1, 3, 7, 64, 100_000])
    func recordsComeOutWholeWhateverTheReadSizes(readBytes: Int) throws {
        let records: [[UInt8]] = [
            Array(0..<200).map { UInt8($0) }, [9, 9, 9, 9], Array(repeating: 7, count: 5000), [],
        ]
        for fragmentBytes in [1000, 4, 100_000] {
            let bytes = Self.stream(records, fragmentBytes: fragmentBytes)
            var reassembler = ReplyReassembler(maxRecordBytes: 1 << 20)
            var out: [[UInt8]] = []
            var offset = 0
            while offset < bytes.count {
                let count = min(readBytes, bytes.count - offset)
                var read = ByteBuffer(bytes: bytes[offset..<offset + count])
                try reassembler.feed(&read) { out.append(Array($0.readableBytesView)) }
                #expect(read.readableBytes == 0)
                offset += count
            }
            #expect(out == records, "reads of \(readBytes), fragments of \(fragmentBytes)")
        }
    }

    @Test func anOversizedRecordIsRefusedBeforeItsBytesArrive() {
        var reassembler = ReplyReassembler(maxRecordBytes: 1000)
        var header = ByteBuffer(bytes: [0x80, 0, 0x10, 0])  // 4096 bytes announced
        #expect(throws: ReplyReassembler.Failure.recordTooLarge(announced: 4096, limit: 1000)) {
            try reassembler.feed(&header) { _ in }
        }
    }

    @Test func repliesSplitAcrossReadsReachTheirCalls() throws {
        let rpc = try EmbeddedRPC()
        var futures: [EventLoopFuture<ByteBuffer>] = []
        var xids: [UInt32] = []
        for i in 0..<3 {
            futures.append(rpc.connection.call(program: 1, version: 1, procedure: 1) { $0.writeXDR(UInt32(i)) })
            var call = try rpc.nextCall()
            xids.append(try call.readXDRUInt32())
        }
        // Three replies, in reverse order, in one stream cut into 5-byte reads.
        var stream = ByteBuffer()
        for i in [2, 1, 0] {
            var body = ByteBuffer()
            body.writeXDR(xids[i])
            for word: UInt32 in [1, 0, 0, 0, 0] { body.writeXDR(word) }
            body.writeXDR(UInt32(100 + i))
            body.writeRepeatingByte(UInt8(i), count: 3000)
            stream.writeInteger(0x8000_0000 | UInt32(body.readableBytes), endianness: .big)
            stream.writeBuffer(&body)
        }
        while stream.readableBytes > 0 {
            try rpc.channel.writeInbound(stream.readSlice(length: min(5, stream.readableBytes))!)
        }
        for i in 0..<3 {
            var body = try completed(futures[i]).get()
            #expect(try body.readXDRUInt32() == UInt32(100 + i))
            #expect(body.readableBytesView.allSatisfy { $0 == UInt8(i) })
            #expect(body.readableBytes == 3000)
        }
    }
}
