import Foundation
import NIOCore
import SunRPCClient
import Synchronization
import Testing
import XDR

@testable import SunRPC

/// Denial of service by unauthenticated clients and credential flavors
/// (item 14), on the wire against an in-process server.
@Suite struct RPCHardeningTests {
    /// Item 1: four connections each send a 4 MiB call in 128-byte fragments (32,768 of them;
    /// the fragment limit is raised to allow it) while another client's NULL calls keep being
    /// answered. Quadratic reassembly copied about 64 GiB per such call, keeping the event
    /// loops busy for minutes; linear reassembly is a few milliseconds of copying. The bound on
    /// a NULL's wait is generous (5 s) so that a busy 2-core machine does not fail it.
    @Test func fragmentedFloodDoesNotStarveOtherClients() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxFragmentsPerRecord = 1 << 20
        try await withTestServer(configuration: configuration) { server in
            var arguments = ByteBuffer()
            arguments.writeRepeatingByte(1, count: (4 << 20) - 256)
            let stream = fragmented(callMessage(xid: 42, arguments: arguments), fragmentBytes: 128)

            let finished = SharedCounter()
            var attackers: [Task<Bool, Never>] = []
            for _ in 0..<4 {
                let client = try server.client(.tcp, timeout: .seconds(60))
                attackers.append(
                    Task {
                        await onThread {
                            defer {
                                client.close()
                                finished.value.add(1, ordering: .relaxed)
                            }
                            guard (try? client.sendRaw(stream)) != nil, let reply = try? client.receiveReply() else {
                                return false
                            }
                            return reply.xid == 42 && reply.status == .success
                        }
                    })
            }

            let probe = try server.client(.tcp, timeout: .seconds(30))
            let slowest: Duration = try await onThread {
                Result { () throws(RPCClientError) -> Duration in
                    var slowest: Duration = .zero
                    var probes = 0
                    while (finished.value.load(ordering: .relaxed) < 4 || probes < 10) && probes < 100_000 {
                        let started = ContinuousClock.now
                        guard try probe.call(program: TestProgram.number, version: 1, procedure: 0).status == .success
                        else {
                            return .seconds(1000)
                        }
                        slowest = max(slowest, ContinuousClock.now - started)
                        probes += 1
                    }
                    return slowest
                }
            }.get()
            #expect(slowest < .seconds(5), "a NULL call waited \(slowest) behind fragmented records")
            for attacker in attackers {
                #expect(await attacker.value, "a 4 MiB call in 128-byte fragments was not answered")
            }
            probe.close()
        }
    }

    /// Item 1, the bound: with the default limit (4096 fragments), a record cut into more
    /// closes the connection; one within the limit is answered.
    @Test func recordOfTooManyFragmentsClosesTheConnection() async throws {
        try await withTestServer { server in
            var arguments = ByteBuffer()
            arguments.writeRepeatingByte(1, count: 64 << 10)
            let client = try server.client(.tcp)
            try client.sendRaw(fragmented(callMessage(xid: 7, arguments: arguments), fragmentBytes: 32))
            var record = try client.receiveRecord()
            #expect(try RPCClient.parseReply(&record).status == .success)
            // 16,400 fragments of 4 bytes.
            let tiny = fragmented(callMessage(xid: 8, arguments: arguments), fragmentBytes: 4)
            try? client.sendRaw(tiny)
            #expect(await onThread { client.waitForClose(timeout: .seconds(10)) })
            #expect(
                try server.client(.tcp).call(program: TestProgram.number, version: 1, procedure: 0).status == .success)
        }
    }

    static func blobArguments(_ bytes: UInt32) -> ByteBuffer { uint32Buffer(bytes) }

    /// A call of the blob procedure (a reply of `replyBytes`) from `client`, on a thread of its own (it blocks).
    static func callBlob(_ client: RPCClient, replyBytes: UInt32) async throws -> RPCCallReply {
        try await onThread {
            Result {
                try client.call(
                    program: TestProgram.number, version: 1, procedure: TestProgram.Procedure.blob.rawValue,
                    arguments: Self.blobArguments(replyBytes))
            }
        }.get()
    }

    static func pipelinedBlobCalls(_ calls: Int, replyBytes: UInt32) -> ByteBuffer {
        var stream = ByteBuffer()
        for xid in 0..<calls {
            var message = callMessage(
                xid: UInt32(1000 + xid), procedure: TestProgram.Procedure.blob.rawValue,
                arguments: Self.blobArguments(replyBytes))
            stream.writeInteger(RecordMarking.header(length: message.readableBytes), endianness: .big)
            stream.writeBuffer(&message)
        }
        return stream
    }

    /// Item 2: a client pipelining calls with large replies and never reading holds at most its
    /// share of unsent replies, and other clients are served meanwhile.
    @Test func clientThatNeverReadsHoldsBoundedReplies() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxQueuedReplyBytesPerConnection = 1 << 20
        configuration.maxQueuedReplyBytes = 64 << 20
        let resources = configuration.resources
        let program = TestProgram()
        let replyBytes: UInt32 = 256 << 10
        let calls = 400  // 100 MiB of replies
        try await withTestServer(programs: [program], configuration: configuration) { server in
            let greedy = try server.client(.tcp, timeout: .seconds(2))
            try greedy.sendRaw(Self.pipelinedBlobCalls(calls, replyBytes: replyBytes))

            // Wait until replies pile up (the kernel's socket buffers take the first few MiB),
            // then until the count settles.
            let piling = ContinuousClock.now + .seconds(20)
            while resources.queuedReplyBytes.load(ordering: .relaxed) == 0, ContinuousClock.now < piling {
                try await Task.sleep(for: .milliseconds(10))
            }
            let queued = try await settledValue(quiet: .seconds(1)) {
                resources.queuedReplyBytes.load(ordering: .relaxed)
            }
            // At most the connection's limit plus one reply per pool thread that had already
            // started (8 threads), however many calls were sent.
            let bound = (1 << 20) + 8 * (Int(replyBytes) + 64)
            #expect(queued > 0)
            #expect(queued <= bound, "\(queued) reply bytes queued for a client that does not read (bound \(bound))")
            #expect(
                program.calls.load(ordering: .relaxed) < calls, "every call ran although its replies were never read")

            // Others are served meanwhile, large replies included.
            let other = try server.client(.tcp)
            #expect(
                try await onThread { Result { try other.call(program: TestProgram.number, version: 1, procedure: 0) } }
                    .get().status == .success)
            let blob = try await Self.callBlob(other, replyBytes: replyBytes)
            #expect(blob.status == .success)
            other.close()
            greedy.close()
        }
    }

    /// Item 2: once a client's replies have not moved for `replyStallTimeout`, its connection
    /// is closed, which frees them.
    @Test func clientThatNeverReadsIsDisconnected() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxQueuedReplyBytesPerConnection = 1 << 20
        configuration.replyStallTimeout = .milliseconds(500)
        let resources = configuration.resources
        let program = TestProgram()
        try await withTestServer(programs: [program], configuration: configuration) { server in
            let greedy = try server.client(.tcp, timeout: .seconds(2))
            try greedy.sendRaw(Self.pipelinedBlobCalls(200, replyBytes: 256 << 10))
            // Watched from the server's side: reading from the socket to see the close would be
            // progress.
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if program.calls.load(ordering: .relaxed) > 0, server.server.connectionCount == 0,
                    resources.queuedReplyBytes.load(ordering: .relaxed) == 0
                {
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(program.calls.load(ordering: .relaxed) > 0)
            #expect(program.calls.load(ordering: .relaxed) < 200, "every call ran although its replies were never read")
            #expect(server.server.connectionCount == 0, "a client that never reads was not disconnected")
            #expect(
                resources.queuedReplyBytes.load(ordering: .relaxed) == 0,
                "replies of a closed connection are still counted")
            #expect(await onThread { greedy.waitForClose(timeout: .seconds(5)) })
            #expect(
                try await onThread {
                    Result { try server.client(.tcp).call(program: TestProgram.number, version: 1, procedure: 0) }
                }.get().status == .success)
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
                try client.sendRaw(Self.pipelinedBlobCalls(100, replyBytes: replyBytes))
                greedy.append(client)
            }
            let piling = ContinuousClock.now + .seconds(10)
            while resources.queuedReplyBytes.load(ordering: .relaxed) == 0, ContinuousClock.now < piling {
                try await Task.sleep(for: .milliseconds(10))
            }
            let queued = try await settledValue(quiet: .seconds(1)) {
                resources.queuedReplyBytes.load(ordering: .relaxed)
            }
            // Over the budget, a connection with replies waiting starts nothing; each may have
            // had up to the pool's 8 threads running when it crossed.
            let bound = (3 << 20) + 4 * 8 * (Int(replyBytes) + 64)
            #expect(queued <= bound, "\(queued) reply bytes queued by 4 clients that do not read (bound \(bound))")
            let reader = try server.client(.tcp)
            let reply = try await Self.callBlob(reader, replyBytes: replyBytes)
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
                #expect(
                    try await onThread {
                        Result { try client.call(program: TestProgram.number, version: 1, procedure: 0) }
                    }.get().status == .success)
                clients.append(client)
            }
            // The first client becomes the one idle longest when the second is used again.
            let second = clients[1]
            #expect(
                try await onThread { Result { try second.call(program: TestProgram.number, version: 1, procedure: 0) } }
                    .get().status == .success)

            let fifth = try server.client(.tcp)
            #expect(
                try await onThread { Result { try fifth.call(program: TestProgram.number, version: 1, procedure: 0) } }
                    .get().status == .success)
            let first = clients[0]
            #expect(
                await onThread { first.waitForClose(timeout: .seconds(5)) },
                "the connection idle longest was not closed")
            for client in clients[1...] {
                #expect(
                    try await onThread {
                        Result { try client.call(program: TestProgram.number, version: 1, procedure: 0) }
                    }.get().status == .success)
            }
            #expect(server.server.connectionCount <= 4)

            // Every connection busy: a call waits on the gate in each.
            let busy = Array(clients[1...]) + [fifth]
            for client in busy {
                _ = try client.send(
                    program: TestProgram.number, version: 1, procedure: TestProgram.Procedure.waitForGate.rawValue,
                    arguments: uint32Buffer(1))
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while program.calls.load(ordering: .relaxed) < 4 + 1 + 1 + 3 + 4, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            let sixth = try server.client(.tcp)
            #expect(
                await onThread { sixth.waitForClose(timeout: .seconds(5)) },
                "a connection over the limit was accepted with none idle")
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
                for (programNumber, procedure) in [
                    (TestProgram.number, UInt32(0)), (TestProgram.number, UInt32(5)), (UInt32(0x2000_0999), UInt32(0)),
                ] {
                    let reply = try await onThread {
                        Result {
                            try client.call(
                                program: programNumber, version: 1, procedure: procedure,
                                credential: .other(flavor: flavor))
                        }
                    }.get()
                    #expect(
                        reply.status == .authError(.badCredential),
                        "flavor \(flavor) program \(programNumber) procedure \(procedure)")
                }
            }
            #expect(program.calls.load(ordering: .relaxed) == 0, "a call with an unknown flavor reached the program")
            #expect(
                try await onThread { Result { try client.call(program: TestProgram.number, version: 1, procedure: 0) } }
                    .get().status == .success)
        }
    }
}
