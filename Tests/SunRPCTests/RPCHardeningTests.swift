import Foundation
import NIOCore
import Synchronization
import Testing
import XDR

@testable import SunRPC

/// Denial of service by unauthenticated clients (issue 10, items 1–3) and credential flavors
/// (item 14), on the wire against an in-process server.
@Suite struct RPCHardeningTests {
    /// Item 1: several connections send a multi-MiB call in small fragments (and others in
    /// 4-byte fragments, beyond the fragment limit) while another client's NULL calls must each
    /// be answered within a second. With quadratic reassembly one 3 MiB call of 1 KiB
    /// fragments cost about 5 GB of copying on an event loop.
    @Test func fragmentedFloodDoesNotStarveOtherClients() async throws {
        try await withTestServer { server in
            // A NULL call carrying 3 MiB of (ignored) arguments, cut into 1 KiB fragments: under
            // the default limits (4 MiB, 4096 fragments), so it must be reassembled and answered.
            var arguments = ByteBuffer()
            arguments.writeRepeatingByte(1, count: 3 << 20)
            let large = fragmented(callMessage(xid: 42, arguments: arguments), fragmentBytes: 1024)
            // A call in 4-byte fragments: 16,000 of them, over the fragment limit, so the server
            // hangs up.
            var prefix = ByteBuffer()
            prefix.writeRepeatingByte(1, count: 64 << 10)
            let tiny = fragmented(callMessage(xid: 43, arguments: prefix), fragmentBytes: 4)

            let finished = SharedCounter()
            var attackers: [Task<(answered: Bool, closed: Bool), Never>] = []
            for index in 0..<6 {
                let client = try server.client(.tcp, timeout: .seconds(30))
                let stream = index % 2 == 0 ? large : tiny
                attackers.append(
                    Task {
                        await onThread {
                            defer {
                                client.close()
                                finished.value.add(1, ordering: .relaxed)
                            }
                            do {
                                try client.sendRaw(stream)
                                let reply = try client.receiveReply()
                                return (reply.xid == 42 && reply.status == .success, false)
                            } catch {
                                return (false, client.waitForClose(timeout: .seconds(5)))
                            }
                        }
                    })
            }

            let probe = try server.client(.tcp, timeout: .seconds(10))
            var slowest: Duration = .zero
            var probes = 0
            while finished.value.load(ordering: .relaxed) < attackers.count || probes < 10 {
                let started = ContinuousClock.now
                let reply = try await onThread { Result { try probe.call(program: TestProgram.number, version: 1, procedure: 0) } }.get()
                #expect(reply.status == .success)
                slowest = max(slowest, ContinuousClock.now - started)
                probes += 1
                try #require(probes < 100_000)
            }
            #expect(slowest < .seconds(1), "a NULL call waited \(slowest) behind fragmented records")

            for (index, attacker) in attackers.enumerated() {
                let outcome = await attacker.value
                if index % 2 == 0 {
                    #expect(outcome.answered, "a 3 MiB call in 1 KiB fragments was not answered")
                } else {
                    #expect(outcome.closed, "a record of 4-byte fragments over the fragment limit did not close the connection")
                }
            }
            probe.close()
        }
    }

    static func blobArguments(_ bytes: UInt32) -> ByteBuffer { uint32Buffer(bytes) }

    /// Item 2: a client pipelining calls with large replies and never reading holds at most its
    /// share of unsent replies, other clients are served meanwhile, and once nothing moves for
    /// `replyStallTimeout` the connection is closed, which frees them.
    @Test func clientThatNeverReadsHoldsBoundedRepliesAndIsClosed() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxQueuedReplyBytesPerConnection = 1 << 20
        configuration.maxQueuedReplyBytes = 64 << 20
        configuration.replyStallTimeout = .seconds(2)
        let resources = configuration.resources
        let program = TestProgram()
        let replyBytes: UInt32 = 256 << 10
        let calls = 400  // 100 MiB of replies
        try await withTestServer(programs: [program], configuration: configuration) { server in
            let greedy = try server.client(.tcp, timeout: .seconds(2))
            var stream = ByteBuffer()
            for xid in 0..<calls {
                var message = callMessage(xid: UInt32(1000 + xid), procedure: TestProgram.Procedure.blob.rawValue, arguments: Self.blobArguments(replyBytes))
                stream.writeInteger(RecordMarking.header(length: message.readableBytes), endianness: .big)
                stream.writeBuffer(&message)
            }
            try greedy.sendRaw(stream)

            // Wait until replies pile up, then until the count settles.
            let piling = ContinuousClock.now + .seconds(10)
            while resources.queuedReplyBytes.load(ordering: .relaxed) == 0, ContinuousClock.now < piling {
                try await Task.sleep(for: .milliseconds(10))
            }
            let queued = try await settledValue { resources.queuedReplyBytes.load(ordering: .relaxed) }
            // At most the connection's limit plus one reply per pool thread that had already
            // started (8 threads), however many calls were sent.
            let bound = (1 << 20) + 8 * (Int(replyBytes) + 64)
            #expect(queued > 0)
            #expect(queued <= bound, "\(queued) reply bytes queued for a client that does not read (bound \(bound))")
            #expect(program.calls.load(ordering: .relaxed) < calls, "every call ran although its replies were never read")

            // Others are served meanwhile, large replies included.
            let other = try server.client(.tcp)
            #expect(try await onThread { Result { try other.call(program: TestProgram.number, version: 1, procedure: 0) } }.get().status == .success)
            let blob = try await onThread {
                Result { try other.call(program: TestProgram.number, version: 1, procedure: TestProgram.Procedure.blob.rawValue, arguments: Self.blobArguments(replyBytes)) }
            }.get()
            #expect(blob.status == .success)

            // Nothing moves: the connection is closed and its replies freed. (Watched from the
            // server's side: reading from the socket to see the close would be progress.)
            let closing = ContinuousClock.now + .seconds(15)
            while server.server.connectionCount > 1 || resources.queuedReplyBytes.load(ordering: .relaxed) > 0, ContinuousClock.now < closing {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(server.server.connectionCount == 1, "a client that never reads was not disconnected")
            #expect(resources.queuedReplyBytes.load(ordering: .relaxed) == 0)
            #expect(await onThread { greedy.waitForClose(timeout: .seconds(5)) })
            #expect(try await onThread { Result { try other.call(program: TestProgram.number, version: 1, procedure: 0) } }.get().status == .success)
            other.close()
        }
    }

    /// Item 2, overall: several clients that never read stay under the overall budget (plus
    /// what was already running), and a client that reads is still served.
    @Test func clientsThatNeverReadShareTheOverallBudget() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxQueuedReplyBytesPerConnection = 2 << 20
        configuration.maxQueuedReplyBytes = 3 << 20
        let resources = configuration.resources
        let replyBytes: UInt32 = 256 << 10
        try await withTestServer(configuration: configuration) { server in
            var greedy: [RPCClient] = []
            for _ in 0..<4 {
                let client = try server.client(.tcp, timeout: .seconds(2))
                var stream = ByteBuffer()
                for xid in 0..<100 {
                    var message = callMessage(xid: UInt32(xid), procedure: TestProgram.Procedure.blob.rawValue, arguments: Self.blobArguments(replyBytes))
                    stream.writeInteger(RecordMarking.header(length: message.readableBytes), endianness: .big)
                    stream.writeBuffer(&message)
                }
                try client.sendRaw(stream)
                greedy.append(client)
            }
            let piling = ContinuousClock.now + .seconds(10)
            while resources.queuedReplyBytes.load(ordering: .relaxed) == 0, ContinuousClock.now < piling {
                try await Task.sleep(for: .milliseconds(10))
            }
            let queued = try await settledValue { resources.queuedReplyBytes.load(ordering: .relaxed) }
            // Over the budget, a connection with replies waiting starts nothing; each may have
            // had up to the pool's 8 threads running when it crossed.
            let bound = (3 << 20) + 4 * 8 * (Int(replyBytes) + 64)
            #expect(queued <= bound, "\(queued) reply bytes queued by 4 clients that do not read (bound \(bound))")
            let reader = try server.client(.tcp)
            let reply = try await onThread {
                Result { try reader.call(program: TestProgram.number, version: 1, procedure: TestProgram.Procedure.blob.rawValue, arguments: Self.blobArguments(replyBytes)) }
            }.get()
            #expect(reply.status == .success)
            reader.close()
            for client in greedy { client.close() }
        }
    }

    /// Item 3: at the connection limit a new connection closes the one idle longest; when
    /// every connection is busy the new one is closed instead.
    @Test func connectionLimitDropsTheIdleOneLongestThenRefuses() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxConnections = 4
        let program = TestProgram()
        try await withTestServer(programs: [program], configuration: configuration) { server in
            var clients: [RPCClient] = []
            for _ in 0..<4 {
                let client = try server.client(.tcp)
                #expect(try await onThread { Result { try client.call(program: TestProgram.number, version: 1, procedure: 0) } }.get().status == .success)
                clients.append(client)
            }
            // The first client becomes the one idle longest when the second is used again.
            let second = clients[1]
            #expect(try await onThread { Result { try second.call(program: TestProgram.number, version: 1, procedure: 0) } }.get().status == .success)

            let fifth = try server.client(.tcp)
            #expect(try await onThread { Result { try fifth.call(program: TestProgram.number, version: 1, procedure: 0) } }.get().status == .success)
            let first = clients[0]
            #expect(await onThread { first.waitForClose(timeout: .seconds(5)) }, "the connection idle longest was not closed")
            for client in clients[1...] {
                #expect(try await onThread { Result { try client.call(program: TestProgram.number, version: 1, procedure: 0) } }.get().status == .success)
            }
            #expect(server.server.connectionCount <= 4)

            // Every connection busy: a call waits on the gate in each.
            let busy = Array(clients[1...]) + [fifth]
            for client in busy {
                _ = try client.send(program: TestProgram.number, version: 1, procedure: TestProgram.Procedure.waitForGate.rawValue, arguments: uint32Buffer(1))
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while program.calls.load(ordering: .relaxed) < 4 + 1 + 1 + 3 + 4, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            let sixth = try server.client(.tcp)
            #expect(await onThread { sixth.waitForClose(timeout: .seconds(5)) }, "a connection over the limit was accepted with none idle")
            program.gate.open()
            for client in busy {
                #expect(try await onThread { Result { try client.receiveReply() } }.get().status == .success)
                client.close()
            }
        }
    }

    @Test func defaultConnectionLimitKeepsADescriptorReserve() {
        #expect(RPCServerConfiguration.defaultMaxConnections(descriptorLimit: 1024) == 768)
        #expect(RPCServerConfiguration.defaultMaxConnections(descriptorLimit: 20000) == 15000)
        #expect(RPCServerConfiguration.defaultMaxConnections(descriptorLimit: 100) == 16)
        let current = RPCServerConfiguration.defaultMaxConnections()
        #expect(current >= 16)
    }

    /// Item 14: a credential flavor the server does not implement is AUTH_BADCRED (RFC 5531),
    /// NULL included, for registered and unregistered programs alike.
    @Test(arguments: RPCTransport.allCases)
    func unknownCredentialFlavorIsBadCredential(transport: RPCTransport) async throws {
        let program = TestProgram()
        try await withTestServer(programs: [program]) { server in
            let client = try server.client(transport)
            for flavor: UInt32 in [AuthFlavor.short, AuthFlavor.dh, AuthFlavor.rpcsecGSS, 99, 0xffff_ffff] {
                for (programNumber, procedure) in [(TestProgram.number, UInt32(0)), (TestProgram.number, UInt32(5)), (UInt32(0x2000_0999), UInt32(0))] {
                    let reply = try await onThread {
                        Result { try client.call(program: programNumber, version: 1, procedure: procedure, credential: .other(flavor: flavor)) }
                    }.get()
                    #expect(reply.status == .authError(.badCredential), "flavor \(flavor) program \(programNumber) procedure \(procedure)")
                }
            }
            #expect(program.calls.load(ordering: .relaxed) == 0, "a call with an unknown flavor reached the program")
            #expect(try await onThread { Result { try client.call(program: TestProgram.number, version: 1, procedure: 0) } }.get().status == .success)
        }
    }
}
