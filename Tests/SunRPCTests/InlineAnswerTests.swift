import Foundation
import NIOCore
import Synchronization
import Testing
import XDR

@testable import SunRPC

/// A program that answers procedure 1 on the event loop when its argument is even and declines
/// when it is odd; procedure 2 is the same but non-idempotent. Each answer says where it was
/// made: 1 inline, 2 on the pool.
final class InlineProgram: RPCProgramHandler {
    static let number: UInt32 = 0x2000_0102
    let program = InlineProgram.number
    let versions: ClosedRange<UInt32> = 1...1
    let offeredInline = Atomic<Int>(0)
    let offeredNonIdempotent = Atomic<Int>(0)

    func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool { procedure == 2 }

    func mayAnswerInline(version: UInt32, procedure: UInt32) -> Bool { procedure == 1 || procedure == 2 }

    func handleInline(_ call: RPCCallContext, arguments: ByteBuffer) -> RPCReply? {
        self.offeredInline.add(1, ordering: .relaxed)
        if call.procedure == 2 { self.offeredNonIdempotent.add(1, ordering: .relaxed) }
        var arguments = arguments
        guard let value = try? arguments.readXDRUInt32(), value % 2 == 0 else { return nil }
        return .success(Self.answer(value, where: 1))
    }

    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        guard call.procedure != 0 else { return .success(ByteBuffer()) }
        guard let value = try? arguments.readXDRUInt32() else { return .garbageArguments }
        return .success(Self.answer(value, where: 2))
    }

    static func answer(_ value: UInt32, where place: UInt32) -> ByteBuffer {
        var results = ByteBuffer()
        results.writeXDR(value)
        results.writeXDR(place)
        return results
    }
}

@Suite struct InlineAnswerTests {
    /// Calls the program answers from memory are answered inline; those it declines reach the
    /// pool with their arguments untouched; a non-idempotent call is never offered (the
    /// duplicate request cache must see it).
    @Test(arguments: RPCTransport.allCases)
    func declinedCallsRunOnThePool(transport: RPCTransport) async throws {
        let program = InlineProgram()
        try await withTestServer(programs: [program]) { server in
            let client = try server.client(transport)
            for value: UInt32 in 0..<8 {
                var reply = try client.call(
                    program: InlineProgram.number, version: 1, procedure: 1, arguments: uint32Buffer(value))
                #expect(reply.status == .success)
                #expect(try reply.body.readXDRUInt32() == value)
                #expect(try reply.body.readXDRUInt32() == (value % 2 == 0 ? 1 : 2), "value \(value)")
            }
            var reply = try client.call(
                program: InlineProgram.number, version: 1, procedure: 2, arguments: uint32Buffer(4))
            #expect(reply.status == .success)
            #expect(try reply.body.readXDRUInt32() == 4)
            #expect(try reply.body.readXDRUInt32() == 2)
        }
        #expect(program.offeredInline.load(ordering: .relaxed) == 8)
        #expect(program.offeredNonIdempotent.load(ordering: .relaxed) == 0)
    }
}
