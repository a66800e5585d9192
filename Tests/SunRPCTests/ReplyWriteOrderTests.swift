import Foundation
import NIOCore
import SunRPCClient
import Synchronization
import Testing
import XDR

@testable import SunRPC

/// Replies answered on the event loop are written to the socket directly when NIO has nothing of the connection
/// left to send, and through NIO otherwise: every record must arrive whole, never cut into by another.
@Suite struct ReplyWriteOrderTests {
    @Test func inlineRepliesWaitBehindALargeReplyNIOIsStillSending() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxQueuedReplyBytesPerConnection = 64 << 20
        let resources = configuration.resources
        let blobBytes: UInt32 = 4 << 20
        let blobs = 4
        let nulls = 50
        var expectedBlob = ByteBuffer()
        expectedBlob.writeRepeatingByte(0x5a, count: Int(blobBytes))
        try await withTestServer(configuration: configuration) { server in
            let client = try server.client(.tcp, timeout: .seconds(20))
            // Large replies first, not read: more than the kernel's socket buffers take, so NIO keeps the rest.
            try client.sendRaw(RPCHardeningTests.pipelinedBlobCalls(blobs, replyBytes: blobBytes))
            let piling = ContinuousClock.now + .seconds(20)
            while resources.queuedReplyBytes.load(ordering: .relaxed) == 0, ContinuousClock.now < piling {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(resources.queuedReplyBytes.load(ordering: .relaxed) > 0, "NIO holds unsent reply bytes")
            // NULL calls, answered on the event loop while those bytes wait.
            var stream = ByteBuffer()
            for xid in 0..<nulls {
                var message = callMessage(xid: UInt32(5000 + xid))
                stream.writeInteger(RecordMarking.header(length: message.readableBytes), endianness: .big)
                stream.writeBuffer(&message)
            }
            try client.sendRaw(stream)

            let replies = try await onThread {
                Result { () throws -> [RPCCallReply] in try (0..<(blobs + nulls)).map { _ in try client.receiveReply() }
                }
            }.get()
            let blobXIDs: [UInt32] = (0..<blobs).map { UInt32(1000 + $0) }
            let nullXIDs: [UInt32] = (0..<nulls).map { UInt32(5000 + $0) }
            let expected = Set(blobXIDs + nullXIDs)
            #expect(Set(replies.map(\.xid)) == expected)
            for reply in replies {
                #expect(reply.status == .success)
                guard reply.xid < 5000 else {
                    #expect(reply.body.readableBytes == 0)
                    continue
                }
                var body = reply.body
                #expect(try body.readXDRUInt32() == blobBytes)
                #expect(body == expectedBlob)
            }
        }
    }

    /// Calls that wait for the connection's replies to go out (its reply bound at one byte: every call waits for the
    /// reply before it) start as each write completes, also when that completion comes inside the flush that ends a
    /// delivery of results from the pool; a NULL call answered there must still be flushed.
    @Test func callsStartedByAWriteThatCompletesAtOnceAreAnswered() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxQueuedReplyBytesPerConnection = 1
        try await withTestServer(configuration: configuration) { server in
            let client = try server.client(.tcp, timeout: .seconds(20))
            var stream = ByteBuffer()
            var arguments = ByteBuffer()
            arguments.writeXDRVariableOpaque([1, 2, 3])
            for xid in UInt32(1)...40 {
                var message =
                    xid % 2 == 1
                    ? callMessage(xid: xid, procedure: TestProgram.Procedure.echo.rawValue, arguments: arguments)
                    : callMessage(xid: xid)
                stream.writeInteger(RecordMarking.header(length: message.readableBytes), endianness: .big)
                stream.writeBuffer(&message)
            }
            try client.sendRaw(stream)
            let xids = try await onThread {
                Result { () throws -> [UInt32] in try (1...40).map { _ in try client.receiveReply().xid } }
            }.get()
            #expect(Set(xids) == Set(1...40))
        }
    }

    /// The same while the client reads as fast as it can: NIO then sends the large replies in many writes, returning
    /// to the event loop between them with room in the socket, and NULL calls keep coming meanwhile.
    @Test func inlineRepliesDuringALargeReplyReadAsItComes() async throws {
        var configuration = RPCServerConfiguration()
        configuration.maxQueuedReplyBytesPerConnection = 64 << 20
        let blobBytes: UInt32 = 4 << 20
        let blobs = 8
        let expectedBlob = ByteBuffer(repeating: 0x5a, count: Int(blobBytes))
        try await withTestServer(configuration: configuration) { server in
            let client = try server.client(.tcp, timeout: .seconds(20))
            let blobsRead = Atomic<Int>(0)
            try client.sendRaw(RPCHardeningTests.pipelinedBlobCalls(blobs, replyBytes: blobBytes))
            let last: UInt32 = 999_999
            // The sender gets a thread of its own at once, not from a child task: a child task waits for a thread of the
            // cooperative pool, which other tests' blocking calls may hold for longer than the reader waits for the
            // last reply (the reader then timed out with the blobs read and the last NULL never sent).
            let sentCount = Atomic<Int>(Int.min)
            let senderDone = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                let count: Int = {
                    func sendNull(_ xid: UInt32) -> Bool {
                        var stream = ByteBuffer()
                        var message = callMessage(xid: xid)
                        stream.writeInteger(RecordMarking.header(length: message.readableBytes), endianness: .big)
                        stream.writeBuffer(&message)
                        return (try? client.sendRaw(stream)) != nil
                    }
                    var sent = 0
                    // While the large replies arrive (bounded), then one more that tells the reader it was the last.
                    while blobsRead.load(ordering: .relaxed) < blobs, sent < 3_000, sendNull(UInt32(100_000 + sent)) {
                        sent += 1
                    }
                    return sendNull(last) ? sent : -1
                }()
                sentCount.store(count, ordering: .releasing)
                senderDone.signal()
            }
            let reader = await onThread { () -> (blobsIntact: Int, nulls: Int, failure: String?) in
                var intact = 0
                var nulls = 0
                var sawLast = false
                while !sawLast || blobsRead.load(ordering: .relaxed) < blobs {
                    guard let reply = try? client.receiveReply() else { return (intact, nulls, "no reply") }
                    guard reply.status == .success else { return (intact, nulls, "status \(reply.status)") }
                    if reply.xid >= 100_000 {
                        guard reply.body.readableBytes == 0 else { return (intact, nulls, "a NULL reply with a body") }
                        if reply.xid == last { sawLast = true } else { nulls += 1 }
                        continue
                    }
                    var body = reply.body
                    if (try? body.readXDRUInt32()) == blobBytes, body == expectedBlob { intact += 1 }
                    blobsRead.add(1, ordering: .relaxed)
                }
                return (intact, nulls, nil)
            }
            let sent = await onThread { () -> Int in
                senderDone.wait(timeout: .now() + 120) == .success ? sentCount.load(ordering: .acquiring) : -1
            }
            #expect(reader.failure == nil)
            #expect(reader.blobsIntact == blobs)
            #expect(reader.nulls == sent)
        }
    }
}
