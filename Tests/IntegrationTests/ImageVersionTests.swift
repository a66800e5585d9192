import Foundation
import NFS3
import SunRPC
import TestSupport
import Testing

/// Image versions through real clients and the `strata image` commands: a client mounted on
/// version 1 keeps reading it across a publish, the next mounts move to version 2 with each
/// client's own changes kept on top, conflicts are reported, rollback and gc behave, and a
/// SIGKILL during publish or gc leaves a consistent set of versions.
@Suite(.serialized) struct ImageVersionTests {
    static func config(clients: String? = nil) -> String {
        """
        \(testServerSection("log_level = \"info\"\nmetrics = \"127.0.0.1:0\""))

        [[export]]
        path = "/diskless"
        lowers = ["@DIR@/v1"]
        upper = "@DIR@/clients/{client}"
        clients = [\(clients ?? "\"127.0.0.0/8(rw,no_root_squash,insecure)\"")]
        """
    }

    /// Version 1, and version 2 made from it as an image build would: one file changed, one
    /// added, one removed, one directory renamed.
    static func makeImages(_ directory: TemporaryDirectory) throws {
        for version in ["v1", "v2"] {
            try directory.write("\(version)/etc/motd", "welcome to \(version)\n")
            try directory.write("\(version)/usr/bin/tool", "tool\n")
        }
        try directory.write("v1/etc/hostname", "image-1\n")
        try directory.write("v1/etc/removed", "only in 1\n")
        try directory.write("v1/docs/readme", "read me\n")
        try directory.write("v2/etc/hostname", "image-2\n")
        try directory.write("v2/etc/added", "only in 2\n")
        try directory.write("v2/manual/readme", "read me\n")
    }

    func strata(_ server: ServerProcess, _ arguments: [String]) throws -> CommandResult {
        try run(strataBinary, arguments + ["--config", server.configPath])
    }

    func text(_ client: NFSTestClient, _ path: String) throws -> String {
        String(decoding: try client.readAll(try client.handle(path)), as: UTF8.self)
    }

    func names(_ client: NFSTestClient, _ path: String) throws -> Set<String> {
        let listing = try client.readdir(path.isEmpty ? client.root : try client.handle(path), count: 65536).get(
            "READDIR \(path)")
        return Set(listing.entries.map { String(decoding: $0.name, as: UTF8.self) }).subtracting([".", ".."])
    }

    func isStale(_ client: NFSTestClient, _ handle: FileHandle3) throws -> Bool {
        if case .fail(.stale, _) = try client.getattr(handle) { return true }
        return false
    }

    @Test func publishUnderAMountedClientThenMoveRollBackAndCollect() throws {
        let directory = try TemporaryDirectory()
        try Self.makeImages(directory)
        let server = try ServerProcess(config: Self.config(), directory: directory)
        defer { server.stop() }

        // A on version 1: holds a file, changes one name v2 changes too and makes its own file.
        let a = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let heldFile = try a.handle("etc/hostname")
        let motd = try a.handle("etc/motd")
        _ = try a.write(motd, Array("A's own motd\n".utf8)).get("WRITE motd")
        let mine = try #require(try a.create("mine").get("CREATE").obj.handle)
        _ = try a.write(mine, Array("A's file\n".utf8)).get("WRITE mine")

        let published = try self.strata(server, ["image", "publish", "/diskless", "--lowers", directory.file("v2")])
        #expect(published.succeeded && published.output.contains("version 2"), "\(published.output)")

        let exports = try self.strata(server, ["exports"])
        #expect(exports.output.contains("lowers: \(directory.file("v2")) (image version 2)"), "\(exports.output)")

        // A stays on 1: the held handle, its bytes and names, no error.
        #expect(String(decoding: try a.readAll(heldFile), as: UTF8.self) == "image-1\n")
        #expect(try self.names(a, "etc") == ["hostname", "motd", "removed"])
        #expect(try self.names(a, "").isSuperset(of: ["docs", "etc", "usr", "mine"]))
        #expect(try self.text(a, "docs/readme") == "read me\n")

        // B's first mount is on 2.
        let b = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.3")
        #expect(try self.text(b, "etc/hostname") == "image-2\n")
        #expect(try self.names(b, "etc") == ["added", "hostname", "motd"])
        #expect(try self.names(b, "") == ["etc", "usr", "manual"])
        let bHandle = try b.handle("etc/added")

        // A reboots: version 2 under its own changes.
        let a2 = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        #expect(try self.text(a2, "etc/hostname") == "image-2\n")
        #expect(try self.text(a2, "etc/added") == "only in 2\n")
        #expect(try self.text(a2, "etc/motd").hasPrefix("A's own motd\n"), "the client's own change stays on top")
        #expect(try self.text(a2, "mine") == "A's file\n")
        #expect(try self.names(a2, "") == ["etc", "usr", "manual", "mine"])
        #expect(try self.isStale(a2, heldFile), "a handle of the version A left")

        // The conflict: A changed etc/motd, and so did version 2.
        let conflicts = try self.strata(server, ["image", "conflicts", "/diskless", "127.0.0.2"])
        #expect(
            conflicts.succeeded && conflicts.output.contains("version 1 → 2") && conflicts.output.contains("/etc/motd"),
            "\(conflicts.output)")
        #expect(!conflicts.output.contains("/mine"), "a name only the client has is no conflict")
        #expect(server.log.contains("image conflicts") && server.log.contains("etc/motd"))
        let metrics = try fetch("http://127.0.0.1:\(try #require(server.metricsPort))/metrics")
        #expect(
            metrics.contains("strata_client_image_version{export=\"/diskless\",client=\"127.0.0.2\"} 2"), "\(metrics)")
        #expect(metrics.contains("strata_image_newest_version{export=\"/diskless\"} 2"))
        let clients = try self.strata(server, ["clients"])
        #expect(
            clients.output.contains("VERSION")
                && clients.output.split(separator: "\n").filter { $0.hasSuffix("\t2") }.count == 2, "\(clients.output)")

        // Rollback: the next mount sees 1.
        let rolledBack = try self.strata(server, ["image", "rollback", "/diskless"])
        #expect(rolledBack.succeeded && rolledBack.output.contains("version 1"), "\(rolledBack.output)")
        let c = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.4")
        #expect(try self.text(c, "etc/hostname") == "image-1\n")
        let listed = try self.strata(server, ["image", "list"])
        #expect(listed.output.contains("1*") && listed.output.contains("127.0.0.4"), "\(listed.output)")

        // gc refuses version 2 while A and B are on it.
        let refused = try self.strata(server, ["image", "gc", "/diskless", "--version", "2"])
        #expect(
            !refused.succeeded && refused.output.contains("in use") && refused.output.contains("127.0.0.3"),
            "\(refused.output)")
        // Both reboot onto 1; then 2 goes, and B's old handles are stale.
        _ = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let b2 = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.3")
        let collected = try self.strata(server, ["image", "gc", "/diskless"])
        #expect(collected.succeeded && collected.output.contains("removed version 2"), "\(collected.output)")
        #expect(try self.isStale(b2, bHandle))
        #expect(try self.text(b2, "etc/hostname") == "image-1\n")

        // After a restart the versions and each client's place are as they were.
        try server.restart()
        let after = try self.strata(server, ["image", "list", "--json"])
        #expect(after.output.contains("\"newest\" : 1") && !after.output.contains("\"number\" : 2"), "\(after.output)")
        let b3 = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.3")
        #expect(try self.text(b3, "etc/hostname") == "image-1\n")
    }

    @Test func aLayerChangedAfterPublishIsRefusedWithWhatChanged() throws {
        let directory = try TemporaryDirectory()
        try Self.makeImages(directory)
        let server = try ServerProcess(config: Self.config(), directory: directory)
        defer { server.stop() }
        #expect(try self.strata(server, ["image", "publish", "/diskless", "--lowers", directory.file("v2")]).succeeded)
        try directory.write("v2/etc/hostname", "edited in place\n")
        try server.restart()
        #expect(throws: NFSTestClient.MountRefused.self) {
            _ = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.3")
        }
        #expect(server.log.contains("refusing to serve a changed image layer"))
        #expect(server.log.contains(directory.file("v2")) && server.log.contains("etc/hostname"), "\(server.log)")
    }

    @Test func aPublishThroughTheConfigurationFileAndReload() throws {
        let directory = try TemporaryDirectory()
        try Self.makeImages(directory)
        let server = try ServerProcess(config: Self.config(), directory: directory)
        defer { server.stop() }
        let a = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let held = try a.handle("etc/hostname")
        try server.writeConfig(Self.config().replacingOccurrences(of: "@DIR@/v1\"]", with: "@DIR@/v2\"]"))
        let reload = try self.strata(server, ["reload"])
        #expect(reload.succeeded && reload.output.contains("image version 2"), "\(reload.output)")
        #expect(String(decoding: try a.readAll(held), as: UTF8.self) == "image-1\n")
        let b = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.3")
        #expect(try self.text(b, "etc/hostname") == "image-2\n")
    }

    /// The versions a server lists (`image list --json`): number → lowers.
    func versions(_ server: ServerProcess) throws -> [Int: [String]] {
        let listed = try self.strata(server, ["image", "list", "--json"])
        guard listed.succeeded else { throw HarnessError("image list: \(listed.output)") }
        struct Image: Decodable {
            struct Version: Decodable {
                var number: Int
                var lowers: [String]
            }
            var versions: [Version]
        }
        let images = try JSONDecoder().decode([Image].self, from: Data(listed.output.utf8))
        return Dictionary(uniqueKeysWithValues: (images.first?.versions ?? []).map { ($0.number, $0.lowers) })
    }

    @Test func aKillDuringPublishOrGcLeavesTheOldOrTheNewVersions() throws {
        let directory = try TemporaryDirectory()
        try Self.makeImages(directory)
        // Enough entries that a publish spends a while fingerprinting.
        for index in 0..<500 { try directory.write("v2/many/f\(index)", "\(index)\n") }
        let server = try ServerProcess(
            config: Self.config(clients: "\"127.0.0.0/8(ro,insecure)\""), directory: directory)
        defer { server.stop() }

        // Publishes one after another; the server is killed once the first is done, so the kill
        // lands inside a later one (fingerprinting or writing the table).
        let publishes = (0..<4).map { _ in
            ["image", "publish", "/diskless", "--lowers", directory.file("v2"), "--config", server.configPath]
        }
        var launched: [Subprocess] = []
        let output = directory.file("publish.out")
        for arguments in publishes {
            launched.append(try Subprocess([strataBinary] + arguments, output: .file(output)))
        }
        let deadline = Date().addingTimeInterval(60)
        while !server.log.contains("image version published"), Date() < deadline, launched.contains(where: \.isRunning)
        {
            usleep(5000)
        }
        server.crash()
        for child in launched { _ = child.wait(timeout: 30) }
        try server.restart()
        let afterPublish = try self.versions(server)
        let numbers = afterPublish.keys.sorted()
        #expect(numbers.first == 1 && numbers == Array(1...(numbers.last ?? 1)), "versions after a kill: \(numbers)")
        #expect(numbers.count >= 2, "the first publish finished before the kill")
        #expect(
            afterPublish[1] == [directory.file("v1")]
                && numbers.dropFirst().allSatisfy { afterPublish[$0] == [directory.file("v2")] })
        // Every version is servable: its layers match their fingerprints.
        let reader = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.5")
        #expect(try self.text(reader, "etc/hostname") == "image-2\n")

        // gc: the orphan identity store of a version removed just before a crash is deleted at
        // start, and a kill during gc leaves each version either listed or gone.
        let exportHex = try #require(
            try FileManager.default.contentsOfDirectory(atPath: directory.file("state/exports")).first)
        try directory.mkdir("state/exports/\(exportHex)/v999")
        _ = try self.strata(server, ["image", "rollback", "/diskless", "--to", "1"])
        let gc = try Subprocess(
            [strataBinary, "image", "gc", "--config", server.configPath], output: .file(directory.file("gc.out")))
        server.crash()
        _ = gc.wait(timeout: 30)
        try server.restart()
        #expect(!directory.exists("state/exports/\(exportHex)/v999"))
        let afterGC = try self.versions(server)
        #expect(afterGC[1] != nil, "the newest version is never collected")
        #expect(Set(afterGC.keys).isSubset(of: Set(afterPublish.keys)))
        // The reader sits on the newest published version: never collected.
        #expect(afterGC[numbers.last ?? 0] != nil)
        let again = try self.strata(server, ["image", "gc", "/diskless"])
        #expect(again.succeeded, "\(again.output)")
        #expect(try self.versions(server).keys.sorted() == [1, numbers.last ?? 0])
    }
}
