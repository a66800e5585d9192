import Foundation
import Logging
import NFS3
import NIOCore
import NIOPosix
import SunRPC
import SunRPCClient
import TestSupport
import Testing
import Union
import XDR

@testable import StrataServer

/// `NFS3Program` behind a real `RPCServer` on loopback, called with the SunRPC test client over
/// TCP and UDP: framing, the duplicate request cache, large transfers.
@Suite struct NFS3WireTests {
    /// Resolves handles as `NFS3Harness` does (export identifier = namespace index + 1).
    struct Resolver: NFS3HandleResolver {
        let namespaces: [UnionNamespace]

        func resolve(
            fileHandle: [UInt8], for call: RPCCallContext
        ) -> Result<(ExportCall, ObjectHandle), CallRejection> {
            guard let decoded = try? ServerFileHandle(bytes: fileHandle) else { return .failure(.badHandle) }
            let index = Int(decoded.exportID) - 1
            guard index >= 0, index < self.namespaces.count else { return .failure(.stale) }
            let object = decoded.object
            var credentials = Credentials(uid: 65534, gid: 65534, groups: [])
            if case .sys(let auth) = call.credential {
                credentials = Credentials(uid: auth.uid, gid: auth.gid, groups: auth.groups)
            }
            let export = ExportCall(
                namespace: self.namespaces[index], credentials: credentials, isReadOnly: false, exportPath: "/wire",
                exportID: UInt32(index + 1), clientKey: call.remoteIP, clientTag: 0, logger: call.logger)
            return .success((export, object))
        }
    }

    /// Runs `body` with a served harness namespace and a client of `transport`.
    func withServer(
        transport: RPCTransport = .tcp,
        wrap: (NFS3Program) -> any RPCProgramHandler = { $0 },
        _ body: (NFS3Harness, RPCClient) throws -> Void
    ) async throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "lower data"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        let logger = Logger(label: "nfs3-wire") { _ in SwiftLogNoOpLogHandler() }
        let program = NFS3Program(
            resolver: Resolver(namespaces: harness.namespaces), writeVerifier: 99, logger: logger)
        let server = RPCServer(programs: [wrap(program)], group: group, threadPool: pool, logger: logger)
        do {
            let port = try await server.bind(host: "127.0.0.1", port: 0)
            let client = try RPCClient(
                host: "127.0.0.1", port: port, transport: transport,
                credential: .sys(AuthSysParameters(stamp: 1, machineName: "test", uid: 0, gid: 0, groups: [])),
                timeout: .seconds(10))
            defer { client.close() }
            try body(harness, client)
        } catch {
            try? await server.shutdown()
            try? await pool.shutdownGracefully()
            try? await group.shutdownGracefully()
            throw error
        }
        try await server.shutdown()
        try await pool.shutdownGracefully()
        try await group.shutdownGracefully()
    }

    func call<Args: XDREncodable, Result: XDRDecodable>(
        _ client: RPCClient, _ procedure: NFS3Procedure, _ args: Args, as: Result.Type, xid: UInt32? = nil
    ) throws -> Result {
        let reply = try client.call(
            program: NFS3.program, version: 3, procedure: procedure.rawValue, arguments: xdrEncoded(args), xid: xid)
        #expect(reply.status == .success)
        var body = reply.body
        return try Result(xdr: &body)
    }

    @Test(arguments: [RPCTransport.tcp, .udp])
    func nullAndGetattrOverTheWire(transport: RPCTransport) async throws {
        try await self.withServer(transport: transport) { harness, client in
            let null = try client.call(program: NFS3.program, version: 3, procedure: 0)
            #expect(null.status == .success)
            #expect(null.body.readableBytes == 0)
            let result = try self.call(client, .getattr, GetAttr3Args(object: harness.root()), as: GetAttr3Res.self)
            let attributes = try #require(result.success, "GETATTR answered \(result.status)")
            #expect(attributes.objAttributes.type == .dir)
        }
    }

    @Test func rpcErrorsOverTheWire() async throws {
        try await self.withServer { _, client in
            #expect(try client.call(program: NFS3.program, version: 3, procedure: 22).status == .procedureUnavailable)
            #expect(
                try client.call(
                    program: NFS3.program, version: 3, procedure: NFS3Procedure.lookup.rawValue,
                    arguments: ByteBuffer(bytes: [0, 0, 0])
                ).status == .garbageArguments)
            #expect(
                try client.call(program: NFS3.program, version: 2, procedure: 0).status
                    == .programMismatch(low: 3, high: 3))
            let bad = try self.call(
                client, .getattr, GetAttr3Args(object: FileHandle3([9, 9, 9])), as: GetAttr3Res.self)
            #expect(bad.status == .badhandle)
        }
    }

    @Test func retransmittedGuardedCreateGetsTheFirstReply() async throws {
        try await self.withServer { harness, client in
            let args = Create3Args(
                where: DirOpArgs3(dir: harness.root(), name: Array("once".utf8)), how: .guarded(.none))
            let first = try self.call(client, .create, args, as: Create3Res.self, xid: 0x1234_5678)
            #expect(first.status == .ok)
            let again = try self.call(client, .create, args, as: Create3Res.self, xid: 0x1234_5678)
            #expect(again == first, "the duplicate request cache answers a retransmission")
            let fresh = try self.call(client, .create, args, as: Create3Res.self, xid: 0x1234_5679)
            #expect(fresh.status == .exist)
        }
    }

    @Test func oneMebibyteWriteAndReadOverTCP() async throws {
        try await self.withServer { harness, client in
            let created = try self.call(
                client, .create,
                Create3Args(where: DirOpArgs3(dir: harness.root(), name: Array("big".utf8)), how: .guarded(.none)),
                as: Create3Res.self)
            let made = try #require(created.success, "create answered \(created.status)")
            let file = try #require(made.obj.handle, "create answered no handle")
            var data = ByteBuffer()
            for index in 0..<(1 << 20) { data.writeInteger(UInt8(truncatingIfNeeded: index &* 7)) }
            let written = try self.call(
                client, .write, Write3Args(file: file, offset: 0, stable: .unstable, data: data), as: Write3Res.self)
            let wrote = try #require(written.success, "write answered \(written.status)")
            #expect(wrote.count == 1 << 20)
            #expect(wrote.verf == WriteVerifier3(rawValue: 99))
            let committed = try self.call(
                client, .commit, Commit3Args(file: file, offset: 0, count: 0), as: Commit3Res.self)
            #expect(committed.status == .ok)
            let read = try self.call(
                client, .read, Read3Args(file: file, offset: 0, count: 1 << 20), as: Read3Res.self)
            let got = try #require(read.success, "read answered \(read.status)")
            #expect(got.data == data)
            #expect(got.eof)
        }
    }
}
