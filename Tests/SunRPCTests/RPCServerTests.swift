import Foundation
import NIOCore
import SunRPCClient
import Testing
import XDR

@testable import SunRPC

/// The status the test server answers one call with.
func replyStatus(
    _ transport: RPCTransport, program: UInt32 = TestProgram.number, version: UInt32, procedure: UInt32,
    arguments: ByteBuffer = ByteBuffer()
) async throws -> RPCReplyStatus {
    try await withTestServer { server in
        try server.client(transport).call(
            program: program, version: version, procedure: procedure, arguments: arguments
        ).status
    }
}

@Suite struct RPCServerTests {
    @Test(arguments: RPCTransport.allCases)
    func nullAndEchoSucceed(transport: RPCTransport) async throws {
        try await withTestServer { server in
            let client = try server.client(transport)
            let null = try client.call(program: TestProgram.number, version: 1, procedure: 0)
            #expect(null.status == .success)
            #expect(null.body.readableBytes == 0)

            var arguments = ByteBuffer()
            arguments.writeXDRVariableOpaque([1, 2, 3, 4, 5])
            var echo = try client.call(program: TestProgram.number, version: 2, procedure: 1, arguments: arguments)
            #expect(echo.status == .success)
            #expect(try echo.body.readXDRVariableOpaque(maxLength: 100) == [1, 2, 3, 4, 5])
        }
    }

    @Test(arguments: RPCTransport.allCases)
    func programUnavailable(transport: RPCTransport) async throws {
        #expect(try await replyStatus(transport, program: 0x2000_0999, version: 1, procedure: 0) == .programUnavailable)
    }

    @Test(arguments: RPCTransport.allCases)
    func programMismatchCarriesRegisteredVersions(transport: RPCTransport) async throws {
        #expect(try await replyStatus(transport, version: 7, procedure: 0) == .programMismatch(low: 1, high: 2))
    }

    @Test(arguments: RPCTransport.allCases)
    func procedureUnavailable(transport: RPCTransport) async throws {
        #expect(try await replyStatus(transport, version: 1, procedure: 99) == .procedureUnavailable)
    }

    @Test(arguments: RPCTransport.allCases)
    func garbageArguments(transport: RPCTransport) async throws {
        var arguments = ByteBuffer()
        arguments.writeXDR(UInt32(1000))  // announces 1000 bytes, sends 2
        arguments.writeBytes([1, 2])
        #expect(try await replyStatus(transport, version: 1, procedure: 1, arguments: arguments) == .garbageArguments)
    }

    @Test(arguments: RPCTransport.allCases)
    func systemError(transport: RPCTransport) async throws {
        #expect(try await replyStatus(transport, version: 1, procedure: 6) == .systemError)
    }

    @Test(arguments: RPCTransport.allCases)
    func rpcMismatchNamesVersionTwo(transport: RPCTransport) async throws {
        try await withTestServer { server in
            let client = try server.client(transport)
            try client.sendMessage(callMessage(xid: 77, rpcVersion: 3))
            var record = try client.receiveRecord()
            let reply = try RPCClient.parseReply(&record)
            #expect(reply.xid == 77)
            #expect(reply.status == .rpcMismatch(low: 2, high: 2))
        }
    }

    @Test(arguments: RPCTransport.allCases)
    func authSysParsedAndPassedToHandler(transport: RPCTransport) async throws {
        try await withTestServer { server in
            let parameters = AuthSysParameters(
                stamp: 42,
                machineName: "client.example",
                uid: 1000,
                gid: 100,
                groups: Array(1...16)
            )
            let client = try server.client(transport, credential: .sys(parameters))
            var reply = try client.call(program: TestProgram.number, version: 1, procedure: 5)
            try #require(reply.status == .success)
            #expect(try reply.body.readXDRUInt32() == 1000)
            #expect(try reply.body.readXDRUInt32() == 100)
            #expect(
                try reply.body.readXDRArray(maxCount: 16) { (b) throws(XDRError) in try b.readXDRUInt32() }
                    == Array(1...16))
            #expect(try reply.body.readXDRString(maxLength: 255) == "client.example")
            #expect(try reply.body.readXDRString(maxLength: 255) == "127.0.0.1")
            #expect(try reply.body.readXDRUInt32() == UInt32(client.localPort))
        }
    }

    @Test(arguments: RPCTransport.allCases)
    func handlerMayAnswerAuthTooWeak(transport: RPCTransport) async throws {
        #expect(try await replyStatus(transport, version: 1, procedure: 5) == .authError(.tooWeak))
    }

    /// AUTH_SYS bodies that break RFC 5531 §14: 17 groups, a 256-byte machine name, a
    /// truncated body, trailing bytes, a body over 400 bytes.
    @Test(arguments: RPCTransport.allCases, [0, 1, 2, 3, 4])
    func badAuthSysCredentialIsAuthBadCred(transport: RPCTransport, variant: Int) async throws {
        try await withTestServer { server in
            var body = ByteBuffer()
            switch variant {
            case 0:
                AuthSysParameters(machineName: "m", uid: 1, gid: 1, groups: Array(1...17)).encode(xdr: &body)
            case 1:
                AuthSysParameters(machineName: String(repeating: "m", count: 256), uid: 1, gid: 1).encode(xdr: &body)
            case 2:
                AuthSysParameters(machineName: "m", uid: 1, gid: 1, groups: [1, 2]).encode(xdr: &body)
                body.moveWriterIndex(to: body.writerIndex - 4)
            case 3:
                AuthSysParameters(machineName: "m", uid: 1, gid: 1).encode(xdr: &body)
                body.writeXDR(UInt32(5))
            default:
                body.writeRepeatingByte(0, count: 404)
            }
            var message = ByteBuffer()
            for word: UInt32 in [9, 0, 2, TestProgram.number, 1, 0, AuthFlavor.sys] { message.writeXDR(word) }
            message.writeXDRVariableOpaque(buffer: body)
            message.writeXDR(AuthFlavor.none)
            message.writeXDR(UInt32(0))
            let client = try server.client(transport)
            try client.sendMessage(message)
            var record = try client.receiveRecord()
            let reply = try RPCClient.parseReply(&record)
            #expect(reply.xid == 9)
            #expect(reply.status == .authError(.badCredential))
        }
    }
}
