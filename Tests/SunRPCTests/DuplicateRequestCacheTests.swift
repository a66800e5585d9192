import NIOCore
import SunRPCClient
import Testing
import XDR

@testable import SunRPC

@Suite struct DuplicateRequestCacheTests {
    /// One call of `procedure` of the test program sent twice with the same `xid` (a retransmission): both replies.
    static func callTwice(
        _ client: RPCClient, procedure: UInt32, xid: UInt32
    ) throws -> (first: RPCCallReply, again: RPCCallReply) {
        let first = try client.call(program: TestProgram.number, version: 1, procedure: procedure, xid: xid)
        return (first, try client.call(program: TestProgram.number, version: 1, procedure: procedure, xid: xid))
    }

    @Test(arguments: RPCTransport.allCases)
    func retransmittedNonIdempotentCallGetsTheOriginalReply(transport: RPCTransport) async throws {
        let program = TestProgram()
        try await withTestServer(programs: [program]) { server in
            let client = try server.client(transport)
            var (first, again) = try Self.callTwice(client, procedure: 3, xid: 4242)
            #expect(try first.body.readXDRUInt32() == 1)
            #expect(try again.body.readXDRUInt32() == 1)
            #expect(program.counter.load(ordering: .relaxed) == 1)
            // A new xid is a new call.
            var next = try client.call(program: TestProgram.number, version: 1, procedure: 3, xid: 4243)
            #expect(try next.body.readXDRUInt32() == 2)
        }
    }

    @Test(arguments: RPCTransport.allCases)
    func retransmittedIdempotentCallIsExecutedAgain(transport: RPCTransport) async throws {
        let program = TestProgram()
        try await withTestServer(programs: [program]) { server in
            let client = try server.client(transport)
            var (first, again) = try Self.callTwice(client, procedure: 4, xid: 777)
            #expect(try first.body.readXDRUInt32() == 1)
            #expect(try again.body.readXDRUInt32() == 2)
        }
    }

    /// TCP clients are known by IP alone: a retransmission on a new connection (new source
    /// port) is still answered from the cache.
    @Test func tcpRetransmissionOnNewConnectionHitsTheCache() async throws {
        let program = TestProgram()
        try await withTestServer(programs: [program]) { server in
            var first = try server.client(.tcp).call(program: TestProgram.number, version: 1, procedure: 3, xid: 99)
            var again = try server.client(.tcp).call(program: TestProgram.number, version: 1, procedure: 3, xid: 99)
            #expect(try first.body.readXDRUInt32() == 1)
            #expect(try again.body.readXDRUInt32() == 1)
        }
    }

    /// A retransmission that arrives while the original still runs is dropped: one execution,
    /// one reply; a later retransmission gets the cached reply.
    @Test(arguments: RPCTransport.allCases)
    func retransmissionWhileInProgressIsDroppedOnTheWire(transport: RPCTransport) async throws {
        let program = TestProgram()
        try await withTestServer(programs: [program]) { server in
            let client = try server.client(transport, timeout: .seconds(2))
            try client.send(program: TestProgram.number, version: 1, procedure: 10, xid: 31)
            try client.send(program: TestProgram.number, version: 1, procedure: 10, xid: 31)
            // Calls on one socket are decoded in order, so once this NULL is answered the
            // retransmission above has met the cache (no sleep: a loaded machine made a fixed
            // 100 ms too short, and the gate opened before the retransmission was seen).
            _ = try client.call(program: TestProgram.number, version: 1, procedure: 0)
            _ = try server.client(.udp).call(program: TestProgram.number, version: 1, procedure: 9)
            var reply = try client.receiveReply()
            #expect(reply.xid == 31)
            #expect(try reply.body.readXDRUInt32() == 1)
            #expect(throws: RPCClientError.self) { _ = try client.receiveReply() }
            #expect(program.counter.load(ordering: .relaxed) == 1)
            var cached = try client.call(program: TestProgram.number, version: 1, procedure: 10, xid: 31)
            #expect(try cached.body.readXDRUInt32() == 1)
            #expect(program.counter.load(ordering: .relaxed) == 1)
        }
    }

    @Test func differentArgumentsWithTheSameXIDAreADifferentCall() async throws {
        let program = TestProgram()
        try await withTestServer(programs: [program]) { server in
            let client = try server.client(.udp)
            _ = try client.call(
                program: TestProgram.number, version: 1, procedure: 3, arguments: uint32Buffer(1), xid: 5)
            var other = try client.call(
                program: TestProgram.number, version: 1, procedure: 3, arguments: uint32Buffer(2), xid: 5)
            #expect(try other.body.readXDRUInt32() == 2)
        }
    }

    @Test func retransmissionOfACallInProgressIsDropped() {
        let cache = DuplicateRequestCache(capacity: 10)
        let key = Self.key(xid: 1)
        guard case .new = cache.begin(key) else { Issue.record("expected new"); return }
        guard case .inProgress = cache.begin(key) else { Issue.record("expected in progress"); return }
        cache.complete(
            key, reply: RPCReplyMessage(xid: 1234, body: .success, results: ByteBuffer(bytes: [1, 2, 3, 4])))
        guard case .replay(let reply) = cache.begin(key) else { Issue.record("expected replay"); return }
        #expect(reply.xid == 1234)
        #expect(Array(reply.results?.readableBytesView ?? ByteBuffer().readableBytesView) == [1, 2, 3, 4])
    }

    @Test func droppedReplyIsForgotten() {
        let cache = DuplicateRequestCache(capacity: 10)
        let key = Self.key(xid: 1)
        _ = cache.begin(key)
        cache.complete(key, reply: nil)
        guard case .new = cache.begin(key) else { Issue.record("expected new"); return }
    }

    @Test func leastRecentlyUsedEntryIsEvicted() {
        let cache = DuplicateRequestCache(capacity: 3)
        for xid in UInt32(1)...3 {
            _ = cache.begin(Self.key(xid: xid))
            cache.complete(Self.key(xid: xid), reply: RPCReplyMessage(xid: 1, body: .success, results: nil))
        }
        _ = cache.begin(Self.key(xid: 1))  // touch 1: 2 is now the oldest
        _ = cache.begin(Self.key(xid: 4))
        #expect(cache.count == 3)
        guard case .replay = cache.begin(Self.key(xid: 1)) else { Issue.record("1 evicted"); return }
        guard case .new = cache.begin(Self.key(xid: 2)) else { Issue.record("2 kept"); return }
    }

    @Test func cacheStaysBoundedUnderChurn() {
        let cache = DuplicateRequestCache(capacity: 50)
        for round in 0..<20_000 {
            let key = Self.key(xid: UInt32(round % 70))
            if case .new = cache.begin(key) {
                cache.complete(key, reply: RPCReplyMessage(xid: 1, body: .success, results: nil))
            }
            #expect(cache.count <= 50)
        }
    }

    /// A client is its address (a TCP client on any port, a UDP client on its port), compared as bytes.
    @Test func aClientIsItsAddressAndForUDPItsPort() throws {
        func key(_ ip: String, _ port: Int, _ transport: RPCTransport) throws -> DuplicateRequestKey {
            DuplicateRequestKey(
                remoteAddress: try SocketAddress(ipAddress: ip, port: port), transport: transport, xid: 7,
                program: 1, version: 1, procedure: 1, arguments: ByteBuffer())
        }
        #expect(try key("192.0.2.7", 700, .tcp) == key("192.0.2.7", 800, .tcp))
        #expect(try key("192.0.2.7", 700, .udp) != key("192.0.2.7", 800, .udp))
        #expect(try key("192.0.2.7", 700, .udp) != key("192.0.2.7", 700, .tcp))
        #expect(try key("192.0.2.7", 700, .tcp) != key("192.0.2.8", 700, .tcp))
        #expect(try key("2001:db8::1", 700, .tcp) == key("2001:db8::1", 900, .tcp))
        #expect(try key("2001:db8::1", 700, .tcp) != key("2001:db8::2", 700, .tcp))
        #expect(try key("2001:db8::1", 700, .tcp) != key("2002:db8::1", 700, .tcp))
        #expect(try key("::ffff:192.0.2.7", 700, .tcp) != key("192.0.2.7", 700, .tcp))
    }

    static func key(xid: UInt32) -> DuplicateRequestKey {
        DuplicateRequestKey(
            remoteAddress: try! SocketAddress(ipAddress: "127.0.0.1", port: 700),
            transport: .udp,
            xid: xid,
            program: 1,
            version: 1,
            procedure: 1,
            arguments: ByteBuffer()
        )
    }
}
