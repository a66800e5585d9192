import Foundation
import NIOCore
import SunRPCClient
import Synchronization
import Testing
import XDR

@testable import SunRPC

/// A program whose one non-idempotent procedure counts and holds its reply (`RPCWorker.holdReply`) until the test
/// releases every held reply at once: a namespace change whose reply waits for its group commit's flush.
final class HoldingProgram: RPCProgramHandler, @unchecked Sendable {  // `lock` guards `releases` and `settles`
    let program: UInt32 = 0x2000_0103
    let versions: ClosedRange<UInt32> = 1...1
    let counter = Atomic<UInt32>(0)
    private let lock = NSLock()
    private var releases: [@Sendable (RPCReply?) -> Void] = []
    private var settles = 0

    func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool { procedure == 1 }

    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        guard call.procedure == 1 else { return .success(ByteBuffer()) }
        var results = ByteBuffer()
        results.writeXDR(self.counter.add(1, ordering: .relaxed).newValue)
        if RPCWorker.mayHoldReplies {
            RPCWorker.holdReply(
                RPCReplyHold(
                    whenReleased: { release in self.lock.withLock { self.releases.append(release) } },
                    settle: { self.lock.withLock { self.settles += 1 } }))
        }
        return .success(results)
    }

    /// Replies held now, and the times a worker asked for them to be settled.
    var held: (replies: Int, settles: Int) { self.lock.withLock { (self.releases.count, self.settles) } }

    /// Releases every held reply, as it is (nil) or replaced.
    func releaseAll(as replacement: RPCReply?) {
        let releases = self.lock.withLock {
            let taken = self.releases
            self.releases = []
            return taken
        }
        for release in releases { release(replacement) }
    }
}

@Suite struct HeldReplyTests {
    static func sendCalls(_ client: RPCClient, program: UInt32, xids: ClosedRange<UInt32>) throws {
        var stream = ByteBuffer()
        for xid in xids {
            var framed = fragmented(callMessage(xid: xid, program: program, procedure: 1), fragmentBytes: 1 << 20)
            stream.writeBuffer(&framed)
        }
        try client.sendRaw(stream)
    }

    /// One worker runs all of a connection's calls while their replies are held (no worker sleeps per call); none
    /// leaves before its release, all leave at the one release, and the duplicate request cache answers a
    /// retransmission only with a released reply.
    @Test func heldRepliesLeaveTogetherOnlyWhenReleasedAndOnlyThenEnterTheCache() async throws {
        let program = HoldingProgram()
        var configuration = RPCServerConfiguration()
        configuration.maxWorkersPerConnection = 1
        try await withTestServer(programs: [program], configuration: configuration) { server in
            let client = try server.client(.tcp, timeout: .seconds(30))
            try Self.sendCalls(client, program: program.program, xids: 1...8)
            #expect(eventually { program.held.replies == 8 }, "a worker slept on a held reply")
            #expect(program.held.settles == 8)
            // A retransmission of a held call is a call in progress: dropped, not run again.
            try Self.sendCalls(client, program: program.program, xids: 3...3)
            // Calls on one socket are decoded in order: once this NULL is answered, the retransmission met the cache;
            // and it is the first reply, so no held reply went out before its release.
            _ = try client.send(program: program.program, version: 1, procedure: 0, xid: 100)
            #expect(try client.receiveReply().xid == 100)
            #expect(program.counter.load(ordering: .relaxed) == 8)

            program.releaseAll(as: nil)
            var values: [UInt32: UInt32] = [:]
            for _ in 1...8 {
                var reply = try client.receiveReply()
                #expect(reply.status == .success)
                values[reply.xid] = try reply.body.readXDRUInt32()
            }
            #expect(Set(values.keys) == Set(1...8))
            #expect(Set(values.values) == Set(1...8))
            var again = try client.call(program: program.program, version: 1, procedure: 1, xid: 3)
            #expect(try again.body.readXDRUInt32() == values[3])
            #expect(program.counter.load(ordering: .relaxed) == 8)
        }
    }

    /// A hold released with another reply (what the reply reported could not be made durable) sends that one, and
    /// the cache keeps it: a retransmission is not told of a success.
    @Test func aReplyReleasedAsAFailureIsSentAndCachedAsTheFailure() async throws {
        let program = HoldingProgram()
        try await withTestServer(programs: [program]) { server in
            let client = try server.client(.tcp, timeout: .seconds(30))
            try Self.sendCalls(client, program: program.program, xids: 1...4)
            #expect(eventually { program.held.replies == 4 })
            program.releaseAll(as: .systemError)
            for _ in 1...4 { #expect(try client.receiveReply().status == .systemError) }
            #expect(try client.call(program: program.program, version: 1, procedure: 1, xid: 2).status == .systemError)
            #expect(program.counter.load(ordering: .relaxed) == 4)
        }
    }
}

/// Waits (bounded) until `condition` holds; false after `seconds`.
private func eventually(_ seconds: Double = 20, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}
