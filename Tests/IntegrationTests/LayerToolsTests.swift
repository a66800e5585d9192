import Foundation
import NFS3
import TestSupport
import Testing

/// `strata layer inspect` and `strata layer promote`: a client's upper layer becomes a shared
/// read-only layer whose whiteouts keep hiding what they hid.
@Suite(.serialized) struct LayerToolsTests {
    @Test func promotedClientLayerServesAsALowerWithItsWhiteouts() throws {
        let server = try ServerProcess(threeLayers: DisklessTests.config())
        let directory = server.directory
        let client = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        let file = try #require(try client.create("added-by-client").get().obj.handle)
        _ = try client.write(file, Array("promoted\n".utf8)).get()
        _ = try client.remove("hostname", in: try client.handle("etc")).get()
        let inspect = try run(strataBinary, ["layer", "inspect", directory.file("clients/127.0.0.2")])
        #expect(inspect.succeeded, "\(inspect.output)")
        #expect(inspect.output.contains("whiteout /etc/hostname"), "\(inspect.output)")

        // The client has it mounted from the running server: a copy could be torn.
        let live = try run(
            strataBinary,
            ["layer", "promote", "127.0.0.2", "--to", directory.file("promoted"), "--config", server.configPath])
        #expect(
            live.output
                == "Error: client 127.0.0.2 has /diskless mounted from the running server (pid \(server.pid)) and may be writing \(directory.path)/clients/127.0.0.2; unmount it on the client (or stop the server) before promoting its layer\n",
            "\(live.output)")
        #expect(live.status == 1 && !directory.exists("promoted"))
        server.stop()
        let promote = try run(
            strataBinary,
            ["layer", "promote", "127.0.0.2", "--to", directory.file("promoted"), "--config", server.configPath])
        #expect(promote.succeeded, "\(promote.output)")
        let again = try run(
            strataBinary,
            ["layer", "promote", "127.0.0.2", "--to", directory.file("promoted"), "--config", server.configPath])
        #expect(!again.succeeded && again.output.contains("exists"), "promote must not overwrite: \(again.output)")

        // A new export with the promoted layer on top of the old image.
        let stacked = try ServerProcess(
            config: """
                [server]
                listen = ["127.0.0.1"]
                nfs_port = 0
                mount_port = 0
                portmapper = "off"
                state_dir = "@DIR@/state2"

                [[export]]
                path = "/image"
                lowers = ["@DIR@/promoted", "@DIR@/lower1", "@DIR@/lower2"]
                clients = ["127.0.0.0/8(ro,insecure)"]
                """, directory: directory)
        defer { stacked.stop() }
        let reader = try NFSTestClient(server: stacked, export: "/image")
        #expect(try reader.readAll(try reader.handle("added-by-client")) == Array("promoted\n".utf8))
        #expect(
            try reader.lookup("hostname", in: try reader.handle("etc")).status == .noent,
            "the promoted whiteout must hide lower1's and lower2's hostname")
        #expect(try reader.readAll(try reader.handle("etc/passwd")) == Array("root:x:0:0:root:/root:/bin/sh\n".utf8))
    }

    @Test func inspectReportsForeignWhiteoutsOfAPlainLayer() throws {
        let directory = try TemporaryDirectory()
        try directory.write("oci/etc/.wh.motd", "")
        try directory.write("oci/var/.wh..wh..opq", "")
        try directory.write("oci/usr/bin/tool", "x")
        let inspect = try run(strataBinary, ["layer", "inspect", directory.file("oci")])
        #expect(inspect.succeeded, "\(inspect.output)")
        #expect(
            inspect.output.contains("whiteout /etc/motd") && inspect.output.contains("opaque /var"), "\(inspect.output)"
        )
    }
}
