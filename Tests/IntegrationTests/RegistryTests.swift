import Foundation
import NFS3
import SunRPC
import SunRPCClient
import TestSupport
import Testing
import XDR

/// The export registry through the real binary: who gets an upper layer, how many, under which
/// key; stable export identifiers across reloads; what a hostile MNT can write to the log.
@Suite(.serialized) struct RegistryIntegrationTests {
    static func config(
        clients: String, export extra: String = "", server: String = "", tables: String = "", path: String = "/diskless"
    ) -> String {
        """
        \(testServerSection(server))

        \(tables)

        [[export]]
        path = "\(path)"
        lowers = ["@DIR@/lower1", "@DIR@/lower2"]
        upper = "@DIR@/clients/{client}"
        clients = [\(clients)]
        \(extra)
        """
    }

    /// The README's `*(ro)` guest gets no upper layer on disk.
    @Test func readOnlyClientsGetNoUpperLayer() throws {
        let server = try ServerProcess(
            threeLayers: Self.config(clients: "\"127.0.0.2(rw,no_root_squash,insecure)\", \"*(ro,insecure)\""))
        let directory = server.directory
        defer { server.stop() }
        let writer = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        _ = try writer.create("mine").get("CREATE")
        for address in ["127.0.0.9", "127.0.0.10", "127.0.0.11"] {
            let guest = try NFSTestClient(server: server, export: "/diskless", localHost: address)
            #expect(try guest.readAll(try guest.handle("etc/hostname")) == Array("site\n".utf8))
            #expect(try guest.create("x").status == .rofs)
            #expect(try guest.lookup("mine").status == .noent, "a guest sees the lowers, not a client's upper")
            #expect(!directory.exists("clients/\(address)"), "no upper for read-only \(address)")
        }
        let uppers = try FileManager.default.contentsOfDirectory(atPath: directory.file("clients"))
        #expect(uppers == ["127.0.0.2"], "\(uppers)")
        // Their handles survive a restart: the shared namespace's identities live in state_dir.
        let hostname = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.9").handle(
            "etc/hostname")
        try server.restart()
        let guest = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.10")
        #expect(try guest.getattr(hostname).status == .ok)
    }

    @Test func aNewClientBeyondMaxClientsIsRefusedWithALogLineNamingTheKey() throws {
        let server = try ServerProcess(
            threeLayers: Self.config(clients: "\"127.0.0.0/8(rw,insecure)\"", export: "max_clients = 2"))
        let directory = server.directory
        defer { server.stop() }
        _ = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        _ = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.3")
        do {
            _ = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.4")
            Issue.record("a third client was admitted beyond max_clients = 2")
        } catch let refused as NFSTestClient.MountRefused {
            #expect(refused.status == .acces)
        }
        #expect(!directory.exists("clients/127.0.0.4"))
        let refusal = server.log.split(separator: "\n").first { $0.contains("MNT refused") && $0.contains("127.0.0.4") }
        #expect(refusal?.contains("max_clients") == true, "\(server.log)")
        // A known client still mounts.
        _ = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.3")
    }

    /// `client_key = "hostname"` with a network rule: invented machine names do not make uppers.
    @Test func machineNamesOfUnnamedHostsDoNotNameUppers() throws {
        let server = try ServerProcess(
            threeLayers: Self.config(
                clients: "\"127.0.0.0/8(rw,insecure)\"", export: "client_key = \"hostname\"",
                tables: "[clients]\n\"lab-pc\" = \"lab-pc\"\n"))
        let directory = server.directory
        defer { server.stop() }
        for index in 0..<5 {
            _ = try NFSTestClient(
                server: server, export: "/diskless", localHost: "127.0.0.5", machineName: "invented-\(index)")
        }
        _ = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.6", machineName: "lab-pc")
        let uppers = try FileManager.default.contentsOfDirectory(atPath: directory.file("clients")).sorted()
        #expect(uppers == ["127.0.0.5", "lab-pc"], "\(uppers)")
    }

    /// An export keeps its identifier across a rename, and a reload that would
    /// change it is refused.
    @Test func exportIDsSurviveRenamesAndAReloadChangingOneIsRefused() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        let rules = "\"127.0.0.0/8(rw,no_root_squash,insecure)\""
        let server = try ServerProcess(config: Self.config(clients: rules, export: "id = 5"), directory: directory)
        defer { server.stop() }
        let client = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let file = try #require(try client.create("kept").get().obj.handle)

        try server.writeConfig(Self.config(clients: rules, export: "id = 6"))
        let refused = try runSplit(strataBinary, ["reload", "--config", server.configPath])
        #expect(refused.status == 1)
        #expect(
            refused.stderr == """
                \(server.configPath):16: export[0].id = 6: export "/diskless" is served with id 5; changing it would make every file handle its clients hold stale: set id = 5, or restart the server to change it
                configuration not reloaded: the server keeps running the previous one

                """, "\(refused.stderr)")
        #expect(try client.getattr(file).status == .ok)
        // SIGHUP refuses it the same way.
        server.signal(SIGHUP)
        // The `strata reload` above logged one rejection already: wait for the second.
        try waitFor("the rejection", timeout: 10) {
            server.log.components(separatedBy: "reload rejected").count - 1 >= 2
        }
        #expect(try client.getattr(file).status == .ok)

        // Renamed, with its id: the handles clients hold stay valid.
        try server.writeConfig(Self.config(clients: rules, export: "id = 5", path: "/renamed"))
        let renamed = try runSplit(strataBinary, ["reload", "--config", server.configPath])
        #expect(renamed.succeeded, "\(renamed.stderr)")
        #expect(
            renamed.stdout.contains("export /diskless renamed /renamed (id 5): its clients' file handles stay valid"),
            "\(renamed.stdout)")
        #expect(try client.getattr(file).status == .ok)
        #expect(try client.getattr(client.root).status == .ok)
        let remounted = try NFSTestClient(server: server, export: "/renamed", localHost: "127.0.0.2")
        #expect(try remounted.lookup("kept").status == .ok)
        #expect(directory.read("state/export-ids") == "5 /renamed\n")
    }

    /// Names from the wire are escaped in the log, and refusals are logged at a
    /// bounded rate with the rest counted.
    @Test func refusedMountsCannotForgeLogLinesOrFloodTheLog() throws {
        let server = try ServerProcess(
            threeLayers: Self.config(clients: "\"127.0.0.2(rw,insecure)\"", server: "metrics = \"127.0.0.1:0\""))
        defer { server.stop() }
        let rpc = try RPCClient(
            host: "127.0.0.1", port: server.mountPort, transport: .tcp, localHost: "127.0.0.3",
            credential: .sys(AuthSysParameters(stamp: 1, machineName: "evil\n\u{1b}[2J", uid: 0, gid: 0)),
            timeout: .seconds(15))
        defer { rpc.close() }
        func mount(_ path: [UInt8]) throws -> MountStatus3? {
            let reply = try rpc.call(
                program: Mount.program, version: 3, procedure: MountProcedure.mnt.rawValue,
                arguments: xdrEncoded(DirPath(path)))
            var body = reply.body
            if case .fail(let status) = try MountRes3(xdr: &body) { return status }
            return nil
        }
        let forged =
            Array("/diskless\n2026-01-01T00:00:00+0000 notice strata : forged line\u{1b}[2J".utf8) + [0xff, 0xfe]
        #expect(try mount(forged) == .noent)
        try waitFor("the refusal", timeout: 10) { server.log.contains("MNT refused") }
        #expect(
            !server.log.contains("\nforged") && !server.log.contains("\n2026-01-01") && !server.log.contains("\u{1b}"),
            "\(server.log)")
        #expect(
            server.log.contains("/diskless\\n2026-01-01T00:00:00+0000 notice strata : forged line\\x1b[2J"),
            "\(server.log)")

        let start = Date()
        let attempts = 300
        for _ in 0..<attempts { #expect(try mount(Array("/nope".utf8)) == .noent) }
        let seconds = Date().timeIntervalSince(start)
        let logged = server.log.components(separatedBy: "MNT refused").count - 1
        // A burst of 20, then 2 a second: what the rate allows in the time the flood took.
        #expect(logged <= 20 + Int(2 * seconds) + 2, "\(logged) refusals logged in \(seconds) s")
        let port = try #require(server.metricsPort)
        let metrics = try fetch("http://127.0.0.1:\(port)/metrics")
        let line = try #require(
            metrics.split(separator: "\n").first {
                $0.hasPrefix("strata_log_lines_suppressed_total{kind=\"mnt_refused\"}")
            })
        let suppressed = try #require(Int(line.split(separator: " ").last ?? ""))
        #expect(
            logged + suppressed == attempts + 1, "every refusal is either logged or counted: \(logged) + \(suppressed)")

        // NFS calls from a host no rule admits, with a handle of the export: the same bound.
        let root = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2").root
        let nfs = try RPCClient(
            host: "127.0.0.1", port: server.nfsPort, transport: .tcp, localHost: "127.0.0.3",
            credential: .sys(AuthSysParameters(machineName: "m", uid: 0, gid: 0)), timeout: .seconds(15))
        defer { nfs.close() }
        let nfsStart = Date()
        for _ in 0..<attempts {
            let reply = try nfs.call(
                program: NFS3.program, version: 3, procedure: NFS3Procedure.getattr.rawValue,
                arguments: xdrEncoded(GetAttr3Args(object: root)))
            var body = reply.body
            #expect(try GetAttr3Res(xdr: &body).status == .acces)
        }
        let nfsSeconds = Date().timeIntervalSince(nfsStart)
        let handleLines = server.log.components(separatedBy: "file handle refused for this client").count - 1
        #expect(
            handleLines >= 1 && handleLines <= 20 + Int(2 * nfsSeconds) + 2,
            "\(handleLines) handle refusals logged in \(nfsSeconds) s")
        let after = try fetch("http://127.0.0.1:\(port)/metrics")
        let handleLine = try #require(
            after.split(separator: "\n").first {
                $0.hasPrefix("strata_log_lines_suppressed_total{kind=\"nfs_handle_refused\"}")
            })
        #expect(Int(handleLine.split(separator: " ").last ?? "") == attempts - handleLines, "\(handleLine)")
    }
}
