import Basics
import Foundation
import NFS3
import NIOCore
import SunRPC
import SunRPCClient
import TestSupport
import Testing
import XDR

@testable import StrataServer
@testable import Union

/// Replies of namespace changes over the wire are held until the group commit's flush makes the change durable
/// (`NFS3Request.run`, `RPCWorker.holdReply`).
@Suite struct NFS3HeldReplyTests {
    let wire = NFS3WireTests()

    func createCall(_ harness: NFS3Harness, _ name: String, xid: UInt32) -> ByteBuffer {
        let args = Create3Args(where: DirOpArgs3(dir: harness.root(), name: Array(name.utf8)), how: .guarded(.none))
        var arguments = ByteBuffer()
        args.encode(xdr: &arguments)
        let message = RPCClient.callMessage(
            xid: xid, program: NFS3.program, version: 3, procedure: NFS3Procedure.create.rawValue,
            credential: .sys(AuthSysParameters(stamp: 1, machineName: "test", uid: 0, gid: 0, groups: [])),
            arguments: arguments)
        var framed = ByteBuffer()
        framed.writeInteger(0x8000_0000 | UInt32(message.readableBytes), endianness: .big)
        framed.writeImmutableBuffer(message)
        return framed
    }

    /// A CREATE made while its flush is held is not answered before that flush ends: a NULL sent after the change
    /// was made is answered first.
    @Test func aCreateIsAnsweredOnlyOnceItsFlushEnded() async throws {
        try await self.wire.withServer { harness, client in
            let sidecar = harness.namespaces[0].identities.sidecar
            let entered = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            let held = Locked(false)
            sidecar.beforeFlush.withLock {
                $0 = { () throws(UnionError) in
                    guard !held.withLock({ $0 }) else { return }
                    held.withLock { $0 = true }
                    entered.signal()
                    _ = release.wait(timeout: .now() + 30)
                }
            }
            defer { sidecar.beforeFlush.withLock { $0 = nil } }
            try client.sendRaw(self.createCall(harness, "held", xid: 41))
            #expect(entered.wait(timeout: .now() + 20) == .success)
            _ = try client.send(program: NFS3.program, version: 3, procedure: 0, xid: 42)
            #expect(try client.receiveReply().xid == 42, "the CREATE was answered before its flush ended")
            release.signal()
            var reply = try client.receiveReply()
            #expect(reply.xid == 41)
            #expect(try Create3Res(xdr: &reply.body).status == .ok)
        }
    }

    /// While every flush fails, each held CREATE is answered NFS3ERR_IO (none is acknowledged), and a retransmission
    /// gets that answer again from the duplicate request cache.
    @Test func changesWhoseFlushFailsAreAnsweredIO() async throws {
        try await self.wire.withServer { harness, client in
            let sidecar = harness.namespaces[0].identities.sidecar
            sidecar.beforeFlush.withLock {
                $0 = { () throws(UnionError) in throw .io(errno: EIO, call: "syncfs", path: "test") }
            }
            var stream = ByteBuffer()
            for xid in UInt32(1)...3 { stream.writeImmutableBuffer(self.createCall(harness, "f\(xid)", xid: xid)) }
            try client.sendRaw(stream)
            for _ in 1...3 {
                var reply = try client.receiveReply()
                #expect(reply.status == .success)
                #expect(try Create3Res(xdr: &reply.body).status == .io)
            }
            var again = try client.call(
                program: NFS3.program, version: 3, procedure: NFS3Procedure.create.rawValue,
                arguments: {
                    var buffer = ByteBuffer()
                    Create3Args(where: DirOpArgs3(dir: harness.root(), name: Array("f2".utf8)), how: .guarded(.none))
                        .encode(xdr: &buffer)
                    return buffer
                }(), xid: 2)
            #expect(try Create3Res(xdr: &again.body).status == .io)
            sidecar.beforeFlush.withLock { $0 = nil }
            // The failed changes are retried by the next flush.
            let later = try self.wire.call(
                client, .create,
                Create3Args(where: DirOpArgs3(dir: harness.root(), name: Array("later".utf8)), how: .guarded(.none)),
                as: Create3Res.self)
            #expect(later.status == .ok)
        }
    }

    /// `--trace` records a held reply when it leaves and as what it leaves as: the CREATE's interval ends after its
    /// flush ended, and a CREATE whose flush failed shows the NFS3ERR_IO its client got, not the success first made.
    @Test func theCallTraceRecordsAHeldReplyAsItLeaves() async throws {
        let directory = try TemporaryDirectory()
        let trace = try CallTrace(path: directory.file("calls.trace"))
        try await self.wire.withServer(wrap: { TracedProgram.nfs($0, trace: trace) }) { harness, client in
            let sidecar = harness.namespaces[0].identities.sidecar
            let entered = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            let flushes = Locked(0)
            sidecar.beforeFlush.withLock {
                $0 = { () throws(UnionError) in
                    let number = flushes.withLock { count in
                        count += 1
                        return count
                    }
                    guard number == 1 else { throw .io(errno: EIO, call: "syncfs", path: "test") }
                    entered.signal()
                    _ = release.wait(timeout: .now() + 30)
                }
            }
            defer { sidecar.beforeFlush.withLock { $0 = nil } }
            try client.sendRaw(self.createCall(harness, "held", xid: 51))
            #expect(entered.wait(timeout: .now() + 20) == .success)
            let beforeRelease = trace.now()
            release.signal()
            var held = try client.receiveReply()
            #expect(held.xid == 51)
            #expect(try Create3Res(xdr: &held.body).status == .ok)
            try client.sendRaw(self.createCall(harness, "failed", xid: 52))
            var failed = try client.receiveReply()
            #expect(failed.xid == 52)
            #expect(try Create3Res(xdr: &failed.body).status == .io)
            trace.close()

            let text = try #require(directory.read("calls.trace"))
            let lines = text.split(separator: "\n").map { $0.split(separator: " ") }
            let first = try #require(lines.first { $0.count == 10 && $0[6] == "51" })
            #expect(try #require(Int64(first[1])) >= beforeRelease, "recorded before its flush ended: \(first)")
            let second = try #require(lines.first { $0.count == 10 && $0[6] == "52" })
            var body = ByteBuffer(bytes: try #require(Data(base64Encoded: String(second[9]))))
            #expect(try Create3Res(xdr: &body).status == .io)
        }
    }
}
