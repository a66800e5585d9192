import Foundation
import NFS3
import NIOCore
import SunRPC
import SunRPCClient
import TestSupport
import Testing
import XDR

/// The real server fed garbage: records of random bytes, truncated calls, oversized records,
/// random datagrams, and well-formed calls with random arguments to every procedure. It must
/// answer or close the connection, never crash, and keep serving.
@Suite(.serialized) struct HostileInputTests {
    @Test func garbageNeverTakesTheServerDown() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        defer { server.stop() }
        let seed =
            ProcessInfo.processInfo.environment["STRATA_FUZZ_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        print("HostileInputTests seed \(seed) (replay with STRATA_FUZZ_SEED=\(seed))")
        var generator = SplitMix64(seed: seed)
        let valid = try NFSTestClient(server: server)
        let root = valid.root

        for round in 0..<200 {
            let length = Int.random(in: 0...600, using: &generator)
            var bytes = ByteBuffer(bytes: (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
            for port in [server.nfsPort, server.mountPort] {
                // Raw garbage as one TCP record, and as a datagram.
                if let tcp = try? RPCClient(host: "127.0.0.1", port: port, transport: .tcp, timeout: .milliseconds(300))
                {
                    var record = ByteBuffer()
                    record.writeInteger(UInt32(0x8000_0000) | UInt32(bytes.readableBytes), endianness: .big)
                    record.writeBuffer(&bytes)
                    try? tcp.sendRaw(record)
                    _ = try? tcp.receiveRecord()
                    tcp.close()
                }
                if let udp = try? RPCClient(host: "127.0.0.1", port: port, transport: .udp, timeout: .milliseconds(100))
                {
                    try? udp.sendRaw(
                        ByteBuffer(bytes: (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }))
                    udp.close()
                }
            }
            // A well-formed call with random arguments, to a random procedure (and handle prefix).
            var arguments = ByteBuffer()
            if round % 2 == 0 { FileHandle3(root.data).encode(xdr: &arguments) }
            arguments.writeBytes(
                (0..<Int.random(in: 0...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator)
                })
            let procedure = UInt32.random(in: 0...23, using: &generator)
            if let reply = try? valid.rpc.call(
                program: NFS3.program, version: 3, procedure: procedure, arguments: arguments)
            {
                #expect(
                    reply.status != .systemError,
                    "procedure \(procedure) answered SYSTEM_ERR (seed \(seed), round \(round))")
            }
            if round % 50 == 49 {
                #expect(
                    server.isRunning, "the server died (seed \(seed), round \(round)); log:\n\(server.log.suffix(3000))"
                )
            }
        }
        // An oversized record closes the connection without hurting the server.
        let big = try RPCClient(host: "127.0.0.1", port: server.nfsPort, transport: .tcp, timeout: .seconds(2))
        var huge = ByteBuffer()
        huge.writeInteger(UInt32(0x8000_0000) | UInt32(0x7fff_0000), endianness: .big)
        try? big.sendRaw(huge)
        #expect(big.waitForClose(timeout: .seconds(5)), "an oversized record must close the connection")

        #expect(server.isRunning)
        let after = try NFSTestClient(server: server)
        #expect(try after.readAll(try after.handle("etc/hostname")) == Array("site\n".utf8))
    }

    /// kB of a /proc/PID/status field (VmRSS, VmHWM).
    static func memoryKiB(_ pid: Int32, _ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return -1
    }

    /// 16 clients pipeline 64 READs of 1 MiB each and never read a reply
    /// (1 GiB of replies; before the fix the server's RSS grew by about that much). The
    /// server's peak RSS must grow by less than 384 MiB, and another client keeps being
    /// answered (within a generous 5 s, for a busy CI machine).
    @Test func clientsThatNeverReadRepliesKeepTheServerBounded() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        let chunk = String(repeating: "0123456789abcdef", count: 65536)  // 1 MiB
        try directory.write("lower1/big", String(repeating: chunk, count: 4))
        let server = try ServerProcess(config: threeLayerConfig(), directory: directory)
        defer { server.stop() }
        let valid = try NFSTestClient(server: server)
        let big = try valid.handle("big")
        _ = try valid.readAll(big)  // warm the page cache and the server's paths
        let baseline = Self.memoryKiB(server.pid, "VmHWM")
        try #require(baseline > 0)

        let credential = RPCCredential.sys(AuthSysParameters(machineName: "greedy", uid: 0, gid: 0))
        var greedy: [RPCClient] = []
        for _ in 0..<16 {
            let client = try RPCClient(
                host: "127.0.0.1", port: server.nfsPort, transport: .tcp, credential: credential, timeout: .seconds(5))
            for index in 0..<64 {
                try client.send(
                    program: NFS3.program, version: 3, procedure: NFS3Procedure.read.rawValue,
                    arguments: xdrEncoded(Read3Args(file: big, offset: UInt64(index % 4) << 20, count: 1 << 20)))
            }
            greedy.append(client)
        }
        defer { for client in greedy { client.close() } }

        // Until the server's memory settles (bounded), others are answered within a second.
        var slowest: Double = 0
        var last = -1
        var stableSince = Date()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let started = Date()
            #expect(try valid.rpc.call(program: NFS3.program, version: 3, procedure: 0).status == .success)
            _ = try valid.getattr(big)
            slowest = max(slowest, Date().timeIntervalSince(started))
            let rss = Self.memoryKiB(server.pid, "VmRSS")
            if abs(rss - last) > 1024 {
                last = rss
                stableSince = Date()
            } else if Date().timeIntervalSince(stableSince) > 1 {
                break
            }
            usleep(50_000)
        }
        let grownMiB = (Self.memoryKiB(server.pid, "VmHWM") - baseline) / 1024
        print(
            "clientsThatNeverReadRepliesKeepTheServerBounded: peak RSS grew by \(grownMiB) MiB, slowest NULL+GETATTR \(slowest) s"
        )
        #expect(grownMiB < 384, "the server's peak RSS grew by \(grownMiB) MiB for clients that never read")
        #expect(slowest < 5, "another client waited \(slowest) s")
        #expect(server.isRunning)
    }
}
