import BootTrace
import Foundation
import NFS3
import NIOCore
import NIOPosix
import SunRPC
import SunRPCClient
import Synchronization
import TestSupport
import Testing
import XDR

/// A boot replay transport on the blocking test client: one call at a time per connection (the
/// client matches replies by xid and drops the others), run off the cooperative pool.
final class SerialRPCTransport: BootReplayTransport {
    let client: RPCClient
    let lock = Mutex(())

    init(port: Int, localHost: String) throws {
        let credential = RPCCredential.sys(
            AuthSysParameters(stamp: 1, machineName: "replay", uid: 0, gid: 0, groups: []))
        self.client = try RPCClient(
            host: "127.0.0.1", port: port, transport: .tcp, localHost: localHost, credential: credential,
            timeout: .seconds(15))
    }

    deinit { self.client.close() }

    func call(program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer) async throws -> ByteBuffer {
        let reply = try await NIOThreadPool.singleton.runIfActive {
            let result: Result<RPCCallReply, any Error> = self.lock.withLock { _ in
                Result {
                    try self.client.call(program: program, version: version, procedure: procedure, arguments: arguments)
                }
            }
            return try result.get()
        }
        guard reply.status == .success else { throw HarnessError("RPC status \(reply.status)") }
        return reply.body
    }
}

/// `strata serve --trace`, `strata trace convert` and the replay of the script by several
/// clients with their own uppers, against the real server.
@Suite(.serialized) struct BootTraceReplayTests {
    static func config(_ clients: String) -> String {
        """
        \(testServerSection())

        [[export]]
        path = "/diskless"
        lowers = ["@DIR@/lower1", "@DIR@/lower2"]
        upper = "@DIR@/\(clients)/{client}"
        clients = ["127.0.0.0/8(rw,no_root_squash,insecure)"]
        """
    }

    /// A short boot, as a client does it: looks up and reads shared files, lists a directory,
    /// creates and writes a log file, renames it, removes a scratch file.
    static func boot(_ client: NFSTestClient) throws {
        let etc = try client.handle("etc")
        _ = try client.getattr(client.root)
        #expect(try client.lookup("motd", in: etc).status == .noent)
        let passwd = try client.handle("etc/passwd")
        _ = try client.readAll(passwd)
        let _: ReadDirPlus3Res = try client.call(
            .readdirplus, ReadDirPlus3Args(dir: etc, cookie: 0, cookieverf: .zero, dircount: 4096, maxcount: 32768))
        let tmp = try client.handle("tmp")
        let log = try #require(
            try client.create("boot.log", in: tmp, how: .guarded(SetAttributes3(mode: 0o644))).get().obj.handle)
        _ = try client.write(log, Array(repeating: UInt8(ascii: "x"), count: 3000), stable: .unstable)
        let _: Commit3Res = try client.call(.commit, Commit3Args(file: log, offset: 0, count: 0))
        let scratch = try #require(try client.create("scratch", in: tmp).get().obj.handle)
        _ = try client.write(scratch, [1, 2, 3])
        #expect(try client.remove("scratch", in: tmp).status == .ok)
        let _: Rename3Res = try client.call(
            .rename,
            Rename3Args(
                from: DirOpArgs3(dir: tmp, name: Array("boot.log".utf8)),
                to: DirOpArgs3(dir: tmp, name: Array("boot.done".utf8))))
        _ = try client.getattr(log)
    }

    @Test func recordedBootReplaysForEachClientInItsOwnUpper() async throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        let tracePath = directory.file("calls.trace")
        // Record.
        do {
            let server = try ServerProcess(
                config: Self.config("recorded"), directory: directory, extraArguments: ["--trace", tracePath])
            let client = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
            try Self.boot(client)
            #expect(server.stop() == 0)
        }
        // Convert.
        let scriptPath = directory.file("boot.script")
        let converted = try runSplit(
            strataBinary, ["trace", "convert", tracePath, "-o", scriptPath, "--note", "integration test"])
        #expect(converted.succeeded, "\(converted.stderr)")
        let text = try #require(directory.read("boot.script"))
        for expected in [
            " - MNT = OK", " LOOKUP / etc = OK", " LOOKUP /etc motd = NOENT", " READ /etc/passwd 0 1048576 = OK",
            " READDIRPLUS /etc 0 4096 32768 = OK", " CREATE /tmp boot.log guarded mode=644 = OK",
            " WRITE /tmp/boot.log 0 3000 unstable = OK",
            " COMMIT /tmp/boot.log 0 0 = OK", " REMOVE /tmp scratch = OK", " RENAME /tmp boot.log /tmp boot.done = OK",
            " GETATTR /tmp/boot.done = OK",
        ] {
            #expect(text.contains(expected + "\n"), "missing '\(expected)' in\n\(text)")
        }
        let script = try BootScript.parse(text, source: scriptPath)

        // Replay: two clients, one after the other, each on its own address and upper.
        let server = try ServerProcess(config: Self.config("clients"), directory: directory)
        defer { server.stop() }
        for (address, tag) in [("127.0.3.10", "first"), ("127.0.3.11", "second")] {
            let nfs = try SerialRPCTransport(port: server.nfsPort, localHost: address)
            let mount = try SerialRPCTransport(port: server.mountPort, localHost: address)
            let result = await BootReplay(script: script, export: "/diskless", clientTag: tag).run(
                nfs: nfs, mount: mount)
            // Every call got the answer the recorded boot got (the second client's guarded
            // creates would answer EXIST had it seen the first one's files).
            #expect(result.failures.isEmpty, "\(tag): \(result.failures)")
            #expect(result.latencies.count == script.calls.count)
            #expect(result.bytesWritten == 3003)
        }
        // Each upper holds its own writes only, and the lowers none.
        let first = try #require(directory.read("clients/127.0.3.10/tree/tmp/boot.done"))
        let second = try #require(directory.read("clients/127.0.3.11/tree/tmp/boot.done"))
        #expect(Array(first.utf8) == BootReplay.payload(tag: "first", offset: 0, count: 3000))
        #expect(Array(second.utf8) == BootReplay.payload(tag: "second", offset: 0, count: 3000))
        #expect(
            !directory.exists("clients/127.0.3.10/tree/tmp/scratch")
                && !directory.exists("clients/127.0.3.10/tree/tmp/boot.log"))
        #expect(!directory.exists("lower1/tmp/boot.done") && !directory.exists("lower2/tmp/boot.done"))
        // And through NFS the second client reads its own log, not the first's.
        let reader = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.3.11")
        #expect(
            try reader.readAll(try reader.handle("tmp/boot.done"))
                == BootReplay.payload(tag: "second", offset: 0, count: 3000))

        // The load generator's storm: three clients at once on the asynchronous client.
        let storm = try runSplit(
            strataBinary,
            [
                "bench", "boot", "--clients", "3", "--trace", scriptPath, "--nfs-port", "\(server.nfsPort)",
                "--mount-port", "\(server.mountPort)",
                "--export", "/diskless", "--source", "127.0.4.1", "--watch-pid", "\(server.pid)", "--json",
            ])
        #expect(storm.succeeded, "\(storm.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(storm.stdout.utf8)) as? [String: Any]
        let figures = try #require(report?["storm"] as? [String: Any], "\(storm.stdout)")
        #expect(figures["errors"] as? Int == 0, "\(storm.stdout)")
        #expect(figures["calls"] as? Int == 3 * script.calls.count)
        #expect(figures["bytesWritten"] as? Int == 3 * 3003)
        for n in 1...3 {
            let content = try #require(directory.read("clients/127.0.4.\(n)/tree/tmp/boot.done"))
            #expect(Array(content.utf8) == BootReplay.payload(tag: "client-\(n - 1)", offset: 0, count: 3000))
        }
    }

    @Test func aMalformedScriptIsRefusedBeforeAnythingIsSent() throws {
        let directory = try TemporaryDirectory()
        try directory.write("bad.script", "# strata boot script 1\n0.000 - MNT = OK\n0.100 - GETATTR /nowhere = OK\n")
        let checked = try runSplit(strataBinary, ["trace", "check", directory.file("bad.script")])
        #expect(!checked.succeeded)
        #expect(checked.stderr.contains("bad.script:3: GETATTR names /nowhere"), "\(checked.stderr)")
    }
}
