import Basics
import Foundation
import NFS3
import NIOCore
import SunRPC
import SunRPCClient
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
}
