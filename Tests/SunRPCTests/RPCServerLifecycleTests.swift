import Foundation
import Logging
import NIOCore
import NIOPosix
import SunRPCClient
import Testing
import XDR

@testable import SunRPC

@Suite struct RPCServerLifecycleTests {
    @Test func idleConnectionIsClosed() async throws {
        var configuration = RPCServerConfiguration()
        configuration.idleConnectionTimeout = .milliseconds(300)
        try await withTestServer(configuration: configuration) { server in
            let client = try server.client(.tcp)
            #expect(try client.call(program: TestProgram.number, version: 1, procedure: 0).status == .success)
            #expect(client.waitForClose(timeout: .seconds(5)))
        }
    }

    /// A client that sent part of a record and then nothing is idle too: the idle time counts from the last call
    /// read or reply written, not from bytes.
    @Test func connectionStuckInARecordIsClosedWhenIdle() async throws {
        var configuration = RPCServerConfiguration()
        configuration.idleConnectionTimeout = .milliseconds(300)
        try await withTestServer(configuration: configuration) { server in
            let client = try server.client(.tcp)
            var partial = ByteBuffer()
            partial.writeInteger(RecordMarking.header(length: 100), endianness: .big)
            partial.writeRepeatingByte(0, count: 10)
            try client.sendRaw(partial)
            #expect(client.waitForClose(timeout: .seconds(5)))
        }
    }

    /// A connection that keeps calling stays open however long that lasts: each call moves its idle deadline.
    @Test func connectionInUseIsNotClosedAsIdle() async throws {
        var configuration = RPCServerConfiguration()
        configuration.idleConnectionTimeout = .milliseconds(200)
        try await withTestServer(configuration: configuration) { server in
            let client = try server.client(.tcp)
            let until = ContinuousClock.now + .milliseconds(1_000)
            var calls = 0
            while ContinuousClock.now < until {
                #expect(try client.call(program: TestProgram.number, version: 1, procedure: 0).status == .success)
                calls += 1
            }
            #expect(calls > 1)
            // Then left alone, it is closed.
            #expect(client.waitForClose(timeout: .seconds(5)))
        }
    }

    @Test func connectionWithACallExecutingIsNotIdle() async throws {
        let program = TestProgram()
        var configuration = RPCServerConfiguration()
        configuration.idleConnectionTimeout = .milliseconds(200)
        try await withTestServer(programs: [program], configuration: configuration) { server in
            let client = try server.client(.tcp)
            let xid = try client.send(program: TestProgram.number, version: 1, procedure: 8, arguments: uint32Buffer(5))
            try await Task.sleep(for: .milliseconds(700))
            program.gate.open()
            let reply = try client.receiveReply()
            #expect(reply.xid == xid)
            #expect(reply.status == .success)
        }
    }

    /// A call executing when the server shuts down still gets its reply (a REMOVE whose reply
    /// is lost in a restart comes back to an empty duplicate request cache as NOENT); calls
    /// sent after the shutdown began are not started.
    @Test(arguments: RPCTransport.allCases)
    func shutdownDrainsExecutingCalls(transport: RPCTransport) async throws {
        let program = TestProgram()
        let server = try await TestServer.start(programs: [program])
        let client = try server.client(transport, timeout: .seconds(10))
        let xid = try client.send(program: TestProgram.number, version: 1, procedure: 8, arguments: uint32Buffer(42))
        // Make sure the call is executing (calls on one socket are handled in order).
        let other = try server.client(transport)
        _ = try other.call(program: TestProgram.number, version: 1, procedure: 0)
        let deadline = ContinuousClock.now + .seconds(10)  // both calls started (bounded wait, no fixed pause)
        while program.calls.load(ordering: .relaxed) < 2 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        async let stopped: Void = server.server.shutdown(gracePeriod: .seconds(10))
        try await Task.sleep(for: .milliseconds(200))
        program.gate.open()
        try await stopped
        var reply = try client.receiveReply()
        #expect(reply.xid == xid)
        #expect(reply.status == .success)
        #expect(try reply.body.readXDRUInt32() == 42)
        try await server.pool.shutdownGracefully()
        try await server.group.shutdownGracefully()
    }

    @Test func shutdownClosesConnectionsAndRefusesNewBinds() async throws {
        // An address of its own, so that no other test's server can take the freed port.
        let server = try await TestServer.start(programs: [TestProgram()], host: "127.77.0.1")
        let client = try server.client(.tcp)
        #expect(try client.call(program: TestProgram.number, version: 1, procedure: 0).status == .success)
        try await server.server.shutdown()
        #expect(client.waitForClose(timeout: .seconds(5)))
        // The listener is gone: its address and port can be bound again (SO_REUSEADDR passes
        // the closed connections' TIME_WAIT, never a listener). The socket, bound and not
        // listening, holds them, so the connect below reaches nobody else.
        let holder = try #require(boundNonListeningSocket(host: server.host, port: server.port))
        defer { close(holder) }
        await #expect(throws: RPCServerError.self) { _ = try await server.server.bind(host: "127.0.0.1", port: 0) }
        #expect(throws: RPCClientError.self) { _ = try server.client(.tcp, timeout: .milliseconds(500)) }
        try await server.stop()
    }

    @Test func closedConnectionsAreForgotten() async throws {
        try await withTestServer { server in
            var clients: [RPCClient] = []
            for _ in 0..<10 {
                let client = try server.client(.tcp)
                _ = try client.call(program: TestProgram.number, version: 1, procedure: 0)
                clients.append(client)
            }
            #expect(server.server.connectionCount == 10)
            for client in clients { client.close() }
            let deadline = ContinuousClock.now + .seconds(5)
            while server.server.connectionCount > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(server.server.connectionCount == 0)
        }
    }

    @Test func asyncClientConveniences() async throws {
        try await withTestServer { server in
            for transport in RPCTransport.allCases {
                let client = try await RPCClient.connect {
                    try RPCClient(host: "127.0.0.1", port: server.port, transport: transport)
                }
                let reply = try await client.callAsync(program: TestProgram.number, version: 1, procedure: 0)
                #expect(reply.status == .success)
            }
        }
    }

    @Test func registrationsCoverEveryVersionAndTransport() async throws {
        try await withTestServer { server in
            let registrations = Set(server.server.registrations())
            #expect(
                registrations == [
                    RPCRegistration(program: TestProgram.number, version: 1, transport: .tcp, port: server.port),
                    RPCRegistration(program: TestProgram.number, version: 2, transport: .tcp, port: server.port),
                    RPCRegistration(program: TestProgram.number, version: 1, transport: .udp, port: server.port),
                    RPCRegistration(program: TestProgram.number, version: 2, transport: .udp, port: server.port),
                ]
            )
        }
    }

    @Test(arguments: [PortmapperMode.system, .builtin, .off])
    func explicitPortmapperModesAreKept(mode: PortmapperMode) {
        #expect(resolvePortmapperMode(mode, logger: Logger(label: "t")) == mode)
    }
}

/// A TCP socket bound to `host:port` and not listening (connections to it are refused), or nil
/// if a listener holds the address.
func boundNonListeningSocket(host: String, port: Int) -> CInt? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var reuse: CInt = 1
    _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<CInt>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr(host)
    let bound = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    guard bound else {
        close(fd)
        return nil
    }
    return fd
}
