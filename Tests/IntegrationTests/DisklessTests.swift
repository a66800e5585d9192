import Foundation
import NFS3
import SunRPC
import Synchronization
import TestSupport
import Testing

/// Per-client upper layers and exports(5)-style access control, with loopback clients that each
/// have their own source address (127.0.0.2, 127.0.0.3, ...).
@Suite(.serialized) struct DisklessTests {
    static func config(metrics: Bool = false, clients: String? = nil) -> String {
        """
        \(testServerSection(metrics ? "metrics = \"127.0.0.1:0\"" : ""))

        [clients]
        "127.0.0.3" = "lab-3"

        [[export]]
        path = "/diskless"
        lowers = ["@DIR@/lower1", "@DIR@/lower2"]
        upper = "@DIR@/clients/{client}"
        clients = [\(clients ?? "\"127.0.0.2(rw,no_root_squash,insecure)\", \"127.0.0.3(rw,no_root_squash,insecure)\", \"127.0.0.4(ro,insecure)\", \"127.0.0.0/30(rw,insecure)\"")]
        """
    }

    @Test func eachClientGetsItsOwnUpperAndSeesOnlyItsOwnChanges() throws {
        let server = try ServerProcess(threeLayers: Self.config())
        let directory = server.directory
        defer { server.stop() }
        let a = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let b = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.3")
        // Layers created on first MNT, named by address, or by the [clients] table.
        #expect(directory.exists("clients/127.0.0.2/tree") && directory.exists("clients/127.0.0.2/layer.db"))
        #expect(directory.exists("clients/lab-3/tree"), "the [clients] table maps 127.0.0.3 to lab-3")
        var mode = stat()
        stat(directory.file("clients/127.0.0.2"), &mode)
        #expect(mode.st_mode & 0o077 == 0, "a client's layer must not be readable by others")

        // Same path, different data.
        let fileA = try #require(try a.create("note").get().obj.handle)
        _ = try a.write(fileA, Array("from a\n".utf8)).get()
        let fileB = try #require(try b.create("note").get().obj.handle)
        _ = try b.write(fileB, Array("from b\n".utf8)).get()
        #expect(try a.readAll(try a.handle("note")) == Array("from a\n".utf8))
        #expect(try b.readAll(try b.handle("note")) == Array("from b\n".utf8))

        // A delete of a shared file is a whiteout of that client only.
        #expect(try a.remove("hostname", in: try a.handle("etc")).status == .ok)
        #expect(try a.lookup("hostname", in: try a.handle("etc")).status == .noent)
        #expect(try b.readAll(try b.handle("etc/hostname")) == Array("site\n".utf8))
        #expect(directory.exists("lower1/etc/hostname"))
        // Both read the shared lowers with no copy in their uppers.
        #expect(!directory.exists("clients/lab-3/tree/etc/passwd"))
        _ = try b.readAll(try b.handle("etc/passwd"))
        #expect(!directory.exists("clients/lab-3/tree/etc/passwd"))

        // Handles of one client are refused for the other.
        #expect(try b.getattr(fileA).status == .acces)
    }

    /// A fleet booting at once: 24 clients with their own addresses mount, write, read back,
    /// delete a shared file and list, all concurrently; each upper holds exactly its own changes.
    @Test func aFleetOfClientsWorksConcurrently() throws {
        let server = try ServerProcess(
            threeLayers: Self.config(clients: "\"127.0.1.0/24(rw,no_root_squash,insecure)\""))
        let directory = server.directory
        defer { server.stop() }
        let failures = Mutex<[String]>([])
        let (nfsPort, mountPort) = (server.nfsPort, server.mountPort)
        DispatchQueue.concurrentPerform(iterations: 24) { index in
            let address = "127.0.1.\(index + 10)"
            do {
                let client = try NFSTestClient(
                    nfsPort: nfsPort, mountPort: mountPort, export: "/diskless", localHost: address)
                let data = (0..<65536).map { UInt8(truncatingIfNeeded: $0 &+ index) }
                let file = try #require(try client.create("mine-\(index)").get("CREATE").obj.handle)
                _ = try client.write(file, data).get("WRITE")
                guard try client.readAll(file) == data else { throw HarnessError("data of \(address) differs") }
                _ = try client.remove("passwd", in: try client.handle("etc")).get("REMOVE")
                let names = try client.readdir(client.root, count: 65536).get("READDIR").entries.map {
                    String(decoding: $0.name, as: UTF8.self)
                }
                guard names.contains("mine-\(index)"),
                    !names.contains(where: { $0.hasPrefix("mine-") && $0 != "mine-\(index)" })
                else {
                    throw HarnessError("\(address) sees \(names)")
                }
            } catch {
                failures.withLock { $0.append("\(address): \(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        for index in 0..<24 {
            let upper = "clients/127.0.1.\(index + 10)/tree"
            #expect(
                directory.exists("\(upper)/mine-\(index)") && !directory.exists("\(upper)/mine-\((index + 1) % 24)"))
        }
        #expect(directory.read("lower2/etc/passwd") != nil)
    }

    @Test func clientsOutsideEveryRuleAreRefusedAndReadOnlyClientsCannotWrite() throws {
        let server = try ServerProcess(threeLayers: Self.config())
        let directory = server.directory
        defer { server.stop() }
        do {
            _ = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.9")
            Issue.record("127.0.0.9 matches no rule and was admitted")
        } catch let refused as NFSTestClient.MountRefused {
            #expect(refused.status == .acces)
        }
        #expect(server.log.contains("MNT refused"), "refusals are logged")
        #expect(!directory.exists("clients/127.0.0.9"))

        let readOnly = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.4")
        #expect(try readOnly.create("x").status == .rofs)
        #expect(try readOnly.remove("passwd", in: try readOnly.handle("etc")).status == .rofs)
        #expect(try readOnly.readAll(try readOnly.handle("etc/hostname")) == Array("site\n".utf8))

        // The most specific rule wins: 127.0.0.2 has its own rule with no_root_squash, the /30
        // network squashes root: a file created by root from 127.0.0.1 belongs to nobody.
        let squashed = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.1")
        #expect(try squashed.create("mine").status == .acces, "squashed root may not write a root-owned 0755 directory")
        let made = try squashed.create("mine", in: try squashed.handle("tmp")).get("CREATE in /tmp (1777)")
        #expect(made.objAttributes.attributes?.uid == 65534)
        let rooted = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        #expect(try rooted.create("mine").get().objAttributes.attributes?.uid == 0)
    }

    @Test func clientResetWhileMountedMakesOldHandlesStaleAndShowsThePristineImage() throws {
        let server = try ServerProcess(threeLayers: Self.config())
        defer { server.stop() }
        let client = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let file = try #require(try client.create("scribble").get().obj.handle)
        _ = try client.remove("passwd", in: try client.handle("etc")).get()
        let listing = try run(strataBinary, ["clients", "--config", server.configPath])
        #expect(listing.succeeded, "\(listing.output)")
        #expect(listing.output.contains("127.0.0.2") && listing.output.contains("/diskless"), "\(listing.output)")

        let reset = try run(strataBinary, ["client", "reset", "127.0.0.2", "--config", server.configPath])
        #expect(reset.succeeded, "\(reset.output)\n\(server.log)")
        #expect(try client.getattr(file).status == .stale)
        #expect(try client.getattr(client.root).status == .stale)
        let fresh = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        #expect(try fresh.lookup("scribble").status == .noent)
        #expect(try fresh.readAll(try fresh.handle("etc/passwd")) == Array("root:x:0:0:root:/root:/bin/sh\n".utf8))
    }

    @Test func sighupReloadsTheConfiguration() throws {
        let server = try ServerProcess(threeLayers: Self.config())
        defer { server.stop() }
        let client = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let before = try #require(try client.create("before-reload").get().obj.handle)
        // Add an export, make 127.0.0.2 read-only.
        try server.writeConfig(
            Self.config(clients: "\"127.0.0.2(ro,insecure)\"") + """

                [[export]]
                path = "/added"
                lowers = ["@DIR@/lower2"]
                clients = ["127.0.0.0/8(ro,insecure)"]
                """)
        server.signal(SIGHUP)
        try waitFor("the reload", timeout: 10) { server.log.contains("configuration reloaded") }
        #expect(try client.create("after-reload").status == .rofs, "changed options apply to the next call")
        #expect(try client.getattr(before).status == .ok)
        let added = try NFSTestClient(server: server, export: "/added", localHost: "127.0.0.2")
        #expect(try added.readAll(try added.handle("etc/hostname")) == Array("base\n".utf8))

        // An invalid file is rejected and the running configuration stays.
        try "[server]\nportmapper = \"nope\"\n".write(toFile: server.configPath, atomically: true, encoding: .utf8)
        server.signal(SIGHUP)
        try waitFor("the rejection", timeout: 10) { server.log.contains("reload rejected") }
        #expect(try added.getattr(added.root).status == .ok)

        // Removing the export makes its handles stale and refuses new mounts.
        try server.writeConfig(Self.config())
        server.signal(SIGHUP)
        try waitFor("the second reload", timeout: 10) {
            server.log.components(separatedBy: "configuration reloaded").count >= 3
        }
        #expect(try added.getattr(added.root).status == .stale)
        #expect(throws: NFSTestClient.MountRefused.self) {
            try NFSTestClient(server: server, export: "/added", localHost: "127.0.0.2")
        }
    }

    @Test func metricsEndpointCountsCallsAndBytes() throws {
        let server = try ServerProcess(threeLayers: Self.config(metrics: true))
        defer { server.stop() }
        let client = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let file = try #require(try client.create("m").get().obj.handle)
        _ = try client.write(file, Array(repeating: 1, count: 4096)).get()
        _ = try client.readAll(try client.handle("etc/passwd"))
        // One copy-up (etc/passwd, 30 bytes, and its parent etc/) and one whiteout.
        _ = try client.write(try client.handle("etc/passwd"), offset: 0, Array("R".utf8)).get()
        _ = try client.remove("hostname", in: try client.handle("etc")).get()
        let port = try #require(server.metricsPort)
        let text = try fetch("http://127.0.0.1:\(port)/metrics")
        #expect(text.contains("strata_rpc_calls_total{program=\"nfs\",procedure=\"WRITE\"} 2"), "\(text.prefix(3000))")
        #expect(text.contains("strata_rpc_duration_seconds_bucket"))
        #expect(text.contains("strata_nfs_written_bytes_total 4097"), "\(text.prefix(3000))")
        #expect(text.contains("strata_clients_mounted 1"))
        #expect(text.contains("strata_copy_ups_total 2"), "etc/ and etc/passwd: \(text.prefix(3000))")
        #expect(text.contains("strata_copy_up_bytes_total 30"))
        #expect(text.contains("strata_whiteouts_created_total 1"))
        // CREATE, the copy-up's records, REMOVE: namespace changes, made durable by group-commit flushes.
        for name in [
            "strata_namespace_changes_total", "strata_namespace_change_lock_held_seconds_total",
            "strata_group_commit_flushes_total", "strata_group_commit_changes_total",
            "strata_group_commit_flush_seconds_total",
        ] {
            let value = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap {
                Double($0.split(separator: " ")[1])
            }
            #expect((value ?? 0) > 0, "\(name): \(text.prefix(3000))")
        }
        #expect(text.contains("strata_namespace_change_lock_wait_seconds_total"))
        #expect(text.contains("strata_group_commit_sync_seconds_total"))  // nothing to sync on a tmpfs
        #expect(text.contains("strata_group_commit_gather_seconds_total"))  // a client's changes one at a time
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` seconds pass.
func waitFor(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(50_000)
    }
    throw HarnessError("timed out after \(timeout) s waiting for \(what)")
}

/// A bounded HTTP GET on loopback (python3's urllib: an independent client).
func fetch(_ url: String) throws -> String {
    let result = try run(
        "python3",
        [
            "-c",
            "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
            url,
        ], timeout: 30)
    guard result.succeeded else { throw HarnessError("GET \(url): \(result.output)") }
    return result.output
}
