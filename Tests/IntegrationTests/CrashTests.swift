import Foundation
import NFS3
import NIOCore
import SunRPC
import TestSupport
import Testing
import XDR

/// SIGKILL of the server while it copies a large lower file up or records whiteouts: after a
/// restart the union shows either the old or the new state, never a half-copied file, and no
/// acknowledged whiteout is lost.
@Suite(.serialized) struct CrashTests {
    @Test(arguments: [0, 20, 60, 150])
    func killDuringCopyUpNeverShowsAHalfCopiedFile(delayMilliseconds: Int) throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        let size = 48 << 20
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        let original = random.readData(ofLength: size)
        try random.close()
        try original.write(to: URL(fileURLWithPath: directory.file("lower2/big.bin")))
        let server = try ServerProcess(config: threeLayerConfig(), directory: directory)
        defer { server.stop() }
        var client = try NFSTestClient(server: server)
        let file = try client.handle("big.bin")
        // WRITE one byte at the start: the whole file must be copied up first.
        let arguments = Write3Args(file: file, offset: 0, stable: .fileSync, data: ByteBuffer(bytes: [0x42]))
        try client.rpc.send(
            program: NFS3.program, version: 3, procedure: NFS3Procedure.write.rawValue, arguments: xdrEncoded(arguments)
        )
        usleep(useconds_t(delayMilliseconds * 1000))
        try server.restart(crash: true)
        client = try NFSTestClient(server: server)
        let handle = try client.handle("big.bin")
        let attributes = try client.getattr(handle).get().objAttributes
        #expect(attributes.size == UInt64(size), "size after the crash: \(attributes.size)")
        let content = Data(try client.readAll(handle))
        let modified = { () -> Data in
            var d = original; d[0] = 0x42; return d
        }()
        #expect(content == original || content == modified, "neither the old nor the new content")
        // Nothing half-done is left in work/ once the layer is open again.
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: directory.file("upper/work"))) ?? []
        #expect(leftovers.isEmpty, "work/ after restart: \(leftovers)")
    }

    @Test func acknowledgedWhiteoutsSurviveAKill() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        for index in 0..<50 { try directory.write("lower2/many/f\(index)", "\(index)") }
        let server = try ServerProcess(config: threeLayerConfig(), directory: directory)
        defer { server.stop() }
        var client = try NFSTestClient(server: server)
        let many = try client.handle("many")
        for index in 0..<50 { _ = try client.remove("f\(index)", in: many).get("REMOVE f\(index)") }
        try server.restart(crash: true)
        client = try NFSTestClient(server: server)
        let listing = try client.readdir(try client.handle("many"), count: 65536).get("READDIR")
        let names = listing.entries.map { String(decoding: $0.name, as: UTF8.self) }.filter { $0 != "." && $0 != ".." }
        #expect(names.isEmpty, "removed names came back after a crash: \(names)")
    }
}
