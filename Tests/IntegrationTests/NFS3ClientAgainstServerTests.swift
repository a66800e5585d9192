import Foundation
import NFS3
import NFS3Client
import NIOCore
import NIOPosix
import TestSupport
import Testing

/// The asynchronous client library (NFS3Client) against the real server: every procedure the
/// load generator and the boot replay use, many calls in flight, typed errors.
@Suite(.serialized) struct NFS3ClientAgainstServerTests {
    @Test func everyProcedureRoundTripsAgainstStrata() async throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        let directory = server.directory
        let group = MultiThreadedEventLoopGroup.singleton
        let client = try await NFS3Client.connect(
            host: "127.0.0.1", nfsPort: server.nfsPort, mountPort: server.mountPort, sourceAddress: "127.0.0.61",
            credential: .unix(uid: 0, gid: 0), timeout: .seconds(30), group: group)
        #expect(client.rpc.localAddress?.ipAddress == "127.0.0.61")
        let root = try await client.mount("/union")
        try await client.null()

        // Reads through the union.
        let hostname = try await client.resolve("etc/hostname", from: root)
        let read = try await client.read(hostname, offset: 0, count: 4096)
        #expect(String(buffer: read.data) == "site\n")
        #expect(read.eof)
        #expect(try await client.getattr(hostname).size == 5)
        let access = try await client.access(hostname, [.read, .modify])
        #expect(Access3(rawValue: access.access).contains(.read))
        let names = try await client.listDirectory(try await client.resolve("shared", from: root)).map {
            String(decoding: $0.name, as: UTF8.self)
        }
        #expect(Set(names) == ["only-in-lower1", "only-in-lower2", "in-both"])

        // Typed NFS errors.
        await #expect(throws: NFS3ClientError.nfs(.noent, procedure: .lookup)) {
            _ = try await client.lookup("no-such-name", in: root)
        }
        await #expect(throws: NFS3ClientError.mount(.noent, path: "/not-exported")) {
            _ = try await client.mount("/not-exported")
        }

        // Writes: create, UNSTABLE + COMMIT, FILE_SYNC, setattr, rename, symlink, remove, rmdir.
        let dir = try await client.mkdir("made", in: root)
        let file = try await client.create("f", in: dir)
        let written = try await client.write(file, offset: 0, data: ByteBuffer(string: "hello, "), stable: .unstable)
        #expect(written.count == 7)
        _ = try await client.write(file, offset: 7, data: ByteBuffer(string: "world"), stable: .fileSync)
        _ = try await client.commit(file)
        #expect(String(buffer: try await client.read(file, offset: 0, count: 100).data) == "hello, world")
        _ = try await client.setattr(file, SetAttributes3(size: 5))
        #expect(try await client.getattr(file).size == 5)
        try await client.rename("f", in: dir, to: "g", in: dir)
        _ = try await client.symlink("link", in: dir, target: "g")
        let link = try await client.lookup("link", in: dir).object
        #expect(try await client.readlink(link) == Array("g".utf8))
        #expect(directory.read("upper/tree/made/g") == "hello")
        try await client.remove("g", in: dir)
        try await client.remove("link", in: dir)
        try await client.rmdir("made", in: root)
        #expect(!directory.exists("upper/tree/made"))

        // Many calls in flight on one connection, answered in whatever order.
        let futures = (0..<200).map { _ in
            client.call(.getattr, GetAttr3Args(object: hostname), as: GetAttr3Res.self)
        }
        for future in futures {
            #expect(try await future.get().status == .ok)
        }
        try await client.close()
        server.stop()
    }
}
