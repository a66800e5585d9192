import Foundation
import NIOCore
import SunRPCClient
import Synchronization
import Testing
import XDR

@testable import SunRPC

/// A program whose one procedure sleeps "on the disk" through `RPCWorker.blocking` until `expected` calls sleep at once
/// (bounded to 10 s): a namespace change waiting for its group commit.
final class SleepingProgram: RPCProgramHandler, @unchecked Sendable {  // `condition` guards `sleeping`
    let program: UInt32 = 0x2000_0102
    let versions: ClosedRange<UInt32> = 1...1
    let expected: Int
    private let condition = NSCondition()
    private var sleeping = 0
    let mostAtOnce = Atomic<Int>(0)

    init(expected: Int) { self.expected = expected }

    func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool { false }

    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        RPCWorker.blocking {
            let deadline = Date(timeIntervalSinceNow: 10)
            self.condition.lock()
            self.sleeping += 1
            self.mostAtOnce.store(max(self.mostAtOnce.load(ordering: .relaxed), self.sleeping), ordering: .relaxed)
            self.condition.broadcast()
            while self.sleeping < self.expected, self.condition.wait(until: deadline) {}
            self.condition.unlock()
        }
        return .success(ByteBuffer())
    }
}

@Suite struct RPCWorkerBlockingTests {
    /// With 2 workers per connection, 8 calls of one connection that sleep through `RPCWorker.blocking` all run at
    /// once: a sleeping worker does not count against the connection's limit (else group commit could never batch
    /// more changes than that limit).
    @Test func callsSleepingThroughBlockingDoNotCountAgainstTheConnectionsWorkers() async throws {
        let program = SleepingProgram(expected: 8)
        var configuration = RPCServerConfiguration()
        configuration.maxWorkersPerConnection = 2
        try await withTestServer(programs: [program], configuration: configuration) { server in
            let client = try server.client(.tcp, timeout: .seconds(30))
            var stream = ByteBuffer()
            for xid in UInt32(1)...8 {
                var framed = fragmented(
                    callMessage(xid: xid, program: program.program, procedure: 1), fragmentBytes: 1 << 20)
                stream.writeBuffer(&framed)
            }
            try client.sendRaw(stream)
            var xids: Set<UInt32> = []
            for _ in 1...8 { xids.insert(try client.receiveReply().xid) }
            #expect(xids == Set(1...8))
            #expect(program.mostAtOnce.load(ordering: .relaxed) == 8)
        }
    }

    /// Outside a pool worker `blocking` just runs its closure.
    @Test func blockingOutsideAWorkerRuns() {
        var ran = false
        RPCWorker.blocking { ran = true }
        #expect(ran)
    }
}
