import Foundation
import TestSupport
import Testing

/// `strata check-config` on the shipped examples and on broken files: errors name the key,
/// the value and the fix.
@Suite struct CheckConfigTests {
    @Test func demoConfigurationIsValid() throws {
        let result = try run(strataBinary, ["check-config", "\(packageRoot)/Config/strata.toml"])
        #expect(result.succeeded, "\(result.output)")
        #expect(result.output.contains("OK"))
    }

    @Test(arguments: ["diskless.toml", "readonly-mirror.toml"])
    func exampleConfigurationsAreValid(name: String) throws {
        // Their layer directories (/srv/...) do not exist here: check everything but the disk.
        let result = try run(strataBinary, ["check-config", "--skip-paths", "\(packageRoot)/Config/\(name)"])
        #expect(result.succeeded, "\(result.output)")
    }

    @Test(arguments: ["Docker/strata.toml", "Config/installed.toml"])
    func packagedConfigurationsAreValid(path: String) throws {
        let result = try run(strataBinary, ["check-config", "--skip-paths", "--config", "\(packageRoot)/\(path)"])
        #expect(result.succeeded, "\(result.output)")
    }

    @Test(arguments: [
        ("[server]\nportmapper = \"sometimes\"\n", "server.portmapper"),
        ("[server]\nnfs_port = 70000\n", "server.nfs_port"),
        ("[[export]]\npath = \"relative\"\nlowers = [\"/\"]\nclients = [\"*\"]\n", "export[0].path"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nclients = [\"10.0.0.0/33(rw)\"]\n", "export[0].clients"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nclients = [\"*(rw,fast)\"]\n", "export[0].clients"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nclients = []\n", "export[0].clients"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nupper = \"/u/{host}\"\nclients = [\"*\"]\n", "export[0].upper"),
        (
            "[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nclients = [\"*\"]\nclient_key = \"mac\"\n",
            "export[0].client_key"
        ),
        ("[server]\nlisten = [\"localhost\"]\n", "server.listen"),
        ("[sever]\n", "sever"),
        ("[server\n", "bad.toml:1: invalid TOML at column"),
    ])
    func invalidConfigurationNamesTheKey(toml: String, key: String) throws {
        let directory = try TemporaryDirectory()
        try directory.write("bad.toml", toml)
        let result = try run(strataBinary, ["check-config", directory.file("bad.toml")])
        #expect(!result.succeeded)
        #expect(result.output.contains(key), "expected the message to name \(key): \(result.output)")
    }

    @Test func missingLowerIsNamed() throws {
        let directory = try TemporaryDirectory()
        try directory.write(
            "c.toml", "[[export]]\npath = \"/x\"\nlowers = [\"\(directory.path)/nope\"]\nclients = [\"*\"]\n")
        let result = try run(strataBinary, ["check-config", directory.file("c.toml")])
        #expect(!result.succeeded)
        #expect(
            result.output.contains("c.toml:3: export[0].lowers = \"\(directory.path)/nope\": no such directory"),
            "\(result.output)")
    }
}

/// Every check of `check-config`, with the exact message a user sees: all errors of a file at
/// once, each as FILE:LINE on stderr, warnings for options accepted without effect.
@Suite struct ConfigCheckMessageTests {
    /// Writes `toml` (`@DIR@` → a scratch directory) and runs check-config on it.
    func check(
        _ toml: String, arguments: [String] = [], prepare: (TemporaryDirectory) throws -> Void = { _ in }
    ) throws
        -> (result: SplitResult, file: String, dir: String)
    {
        let directory = try TemporaryDirectory()
        try prepare(directory)
        try directory.write("c.toml", toml.replacingOccurrences(of: "@DIR@", with: directory.path))
        let file = directory.file("c.toml")
        return (try runSplit(strataBinary, ["check-config", file] + arguments), file, directory.path)
    }

    @Test func reportsEveryErrorWithFileAndLineOnStderr() throws {
        let (result, file, _) = try self.check(
            """
            [server]
            nfs_port = 70000
            portmapper = "sometimes"
            metrics = "localhost:99999"

            [[export]]
            path = "/x"
            lowers = ["/"]
            clients = [
                "10.0.0.0/24(rw)",
                "*(rw,nosquash)",
            ]
            """, arguments: ["--skip-paths"])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty, "errors go to stderr: \(result.stdout)")
        let expected = [
            "\(file):2: server.nfs_port = 70000: a port number from 0 to 65535 (0 picks a free port)",
            "\(file):3: server.portmapper = \"sometimes\": one of \"auto\", \"system\", \"builtin\", \"off\"",
            "\(file):4: server.metrics = \"localhost:99999\": \"HOST:PORT\" with a port from 0 to 65535, e.g. \"127.0.0.1:9102\" (omit the key to turn metrics off)",
            "\(file):11: export[0].clients = \"*(rw,nosquash)\": unknown option \"nosquash\"; options are \(Self.options)",
        ]
        #expect(result.stderr == expected.joined(separator: "\n") + "\n", "\(result.stderr)")
    }

    static let options =
        "rw, ro, root_squash, no_root_squash, all_squash, no_all_squash, anonuid=N, anongid=N, secure, insecure, sec=sys, sync, no_subtree_check, no_wdelay"

    /// (configuration, the line of the error, the message after `FILE:LINE: `).
    static let layerCases: [(String, Int, String)] = [
        (
            "[server]\nstate_dir = \"@DIR@/state\"\n[[export]]\npath = \"/a\"\nupper = \"@DIR@/up\"\nclients = [\"*\"]\n[[export]]\npath = \"/b\"\nupper = \"@DIR@/up\"\nclients = [\"*\"]\n",
            9,
            "export[1].upper = \"@DIR@/up\": overlaps the upper of export[0] (\"@DIR@/up\"); two exports writing one layer corrupt each other's whiteouts and metadata: give each export its own upper"
        ),
        (
            "[server]\nstate_dir = \"@DIR@/state\"\n[[export]]\npath = \"/a\"\nupper = \"@DIR@/c/{client}\"\nclients = [\"*\"]\n[[export]]\npath = \"/b\"\nupper = \"@DIR@/c/shared\"\nclients = [\"*\"]\n",
            9,
            "export[1].upper = \"@DIR@/c/shared\": overlaps the upper of export[0] (\"@DIR@/c/{client}\"); two exports writing one layer corrupt each other's whiteouts and metadata: give each export its own upper"
        ),
        (
            "[server]\nstate_dir = \"@DIR@/state\"\n[[export]]\npath = \"/a\"\nlowers = [\"@DIR@/lower\"]\nupper = \"@DIR@/lower/up\"\nclients = [\"*\"]\n",
            6,
            "export[0].upper = \"@DIR@/lower/up\": inside export[0].lowers \"@DIR@/lower\"; a lower layer must not change under the union: put the upper outside every lower"
        ),
        (
            "[server]\nstate_dir = \"@DIR@/state\"\n[[export]]\npath = \"/a\"\nlowers = [\"@DIR@/lower\"]\nupper = \"@DIR@/state/clients/{client}\"\nclients = [\"*\"]\n",
            6,
            "export[0].upper = \"@DIR@/state/clients/{client}\": inside server.state_dir \"@DIR@/state\", which holds the server's own files: put the upper elsewhere"
        ),
        (
            "[server]\nstate_dir = \"@DIR@/state\"\n[[export]]\npath = \"/a\"\nlowers = [\"@DIR@/base\", \"@DIR@/{client}\"]\nclients = [\"*\"]\n",
            5,
            "export[0].lowers = \"@DIR@/{client}\": {client} only works in upper: lowers are shared by every client; give each client its own layer with upper = \".../{client}\""
        ),
    ]

    @Test(arguments: 0..<layerCases.count)
    func layersThatBreakAFleetAreRefused(index: Int) throws {
        let (toml, line, message) = Self.layerCases[index]
        let (result, file, dir) = try self.check(toml, arguments: ["--skip-paths"])
        #expect(result.status == 1)
        #expect(
            result.stderr == "\(file):\(line): \(message.replacingOccurrences(of: "@DIR@", with: dir))\n",
            "\(result.stderr)")
    }

    @Test func anUpperOrStateDirThatCannotBeCreatedIsNamed() throws {
        let (result, file, dir) = try self.check(
            "[server]\nstate_dir = \"@DIR@/file/state\"\n[[export]]\npath = \"/a\"\nlowers = [\"@DIR@/lower\"]\nupper = \"@DIR@/file/up/{client}\"\nclients = [\"*\"]\n"
        ) { directory in
            try directory.mkdir("lower")
            try directory.write("file", "not a directory\n")
        }
        #expect(result.status == 1)
        #expect(
            result.stderr == """
                \(file):2: server.state_dir = "\(dir)/file/state": cannot be created: \(dir)/file is a file, not a directory
                \(file):6: export[0].upper = "\(dir)/file/up/{client}": cannot be created: \(dir)/file is a file, not a directory

                """, "\(result.stderr)")
    }

    @Test func errorsOfTheFileAndOfTheDiskAreReportedTogether() throws {
        let (result, file, dir) = try self.check(
            "[server]\nstate_dir = \"@DIR@/state\"\n[[export]]\npath = \"/a\"\nlowers = [\"@DIR@/missing\"]\nclients = [\"*(rw,nosquash)\"]\n"
        )
        #expect(result.status == 1)
        #expect(
            result.stderr == """
                \(file):5: export[0].lowers = "\(dir)/missing": no such directory (create it or fix the path)
                \(file):6: export[0].clients = "*(rw,nosquash)": unknown option "nosquash"; options are \(Self.options)

                """, "\(result.stderr)")
    }

    @Test func theSameClientsInTwoRulesAreRefused() throws {
        let (result, file, _) = try self.check(
            "[[export]]\npath = \"/a\"\nlowers = [\"/\"]\nclients = [\"10.0.0.0/24(rw)\", \"10.0.0.7/255.255.255.0(ro)\"]\n",
            arguments: ["--skip-paths"])
        #expect(result.status == 1)
        #expect(
            result.stderr
                == "\(file):4: export[0].clients = \"10.0.0.7/255.255.255.0(ro)\": the same clients as the earlier rule \"10.0.0.0/24(rw)\"; only one of them would apply: merge their options into one rule\n",
            "\(result.stderr)")
    }

    @Test(arguments: [
        ("async", "option async is accepted but ignored: Strata makes every change durable before it replies (sync)"),
        ("wdelay", "option wdelay is accepted but ignored: Strata does not delay writes to gather them"),
        (
            "subtree_check",
            "option subtree_check is accepted but ignored: file handles name an export's namespace, never a subtree"
        ),
    ])
    func optionsWithoutEffectAreWarnings(option: String, message: String) throws {
        let (result, file, _) = try self.check(
            "[[export]]\npath = \"/a\"\nlowers = [\"/\"]\nclients = [\n  \"*(ro)\",\n  \"10.0.0.0/8(rw,\(option))\",\n]\n",
            arguments: ["--skip-paths"])
        #expect(result.succeeded, "a warning does not fail the check: \(result.stderr)")
        #expect(
            result.stderr == "warning: \(file):6: export[0].clients = \"10.0.0.0/8(rw,\(option))\": \(message)\n",
            "\(result.stderr)")
        #expect(result.stdout.contains("OK"))
    }

    @Test func secSysIsAcceptedAndKerberosRefused() throws {
        let good = try self.check(
            "[[export]]\npath = \"/a\"\nlowers = [\"/\"]\nclients = [\"*(ro,sec=sys)\"]\n", arguments: ["--skip-paths"])
        #expect(good.result.succeeded, "\(good.result.stderr)")
        for flavor in ["krb5", "krb5p", "sys:krb5i"] {
            let bad = try self.check(
                "[[export]]\npath = \"/a\"\nlowers = [\"/\"]\nclients = [\"*(ro,sec=\(flavor))\"]\n",
                arguments: ["--skip-paths"])
            let refused = flavor.split(separator: ":").last.map(String.init) ?? flavor
            #expect(
                bad.result.stderr
                    == "\(bad.file):4: export[0].clients = \"*(ro,sec=\(flavor))\": sec=\(refused) is not supported: Strata serves AUTH_SYS only (no Kerberos/RPCSEC_GSS); use sec=sys or drop the option\n",
                "\(bad.result.stderr)")
        }
    }

    @Test func dottedNetmasksAreAcceptedAsExports5Does() throws {
        let good = try self.check(
            "[[export]]\npath = \"/a\"\nlowers = [\"/\"]\nclients = [\"10.0.0.0/255.255.255.0(rw)\", \"10.1.0.0/255.255.0.0\"]\n",
            arguments: ["--skip-paths"])
        #expect(good.result.succeeded, "\(good.result.stderr)")
        let bad = try self.check(
            "[[export]]\npath = \"/a\"\nlowers = [\"/\"]\nclients = [\"10.0.0.0/255.0.255.0\"]\n",
            arguments: ["--skip-paths"])
        #expect(bad.result.status == 1)
        #expect(
            bad.result.stderr.hasPrefix(
                "\(bad.file):4: export[0].clients = \"10.0.0.0/255.0.255.0\": a prefix length from 0 to 32 or a contiguous netmask"
            ), "\(bad.result.stderr)")
    }

    @Test func theSamePortForNFSAndMountHasItsOwnMessage() throws {
        let (result, file, _) = try self.check("[server]\nnfs_port = 2049\nmount_port = 2049\n")
        #expect(
            result.stderr
                == "\(file):3: server.mount_port = 2049: the same port as server.nfs_port; NFS and MOUNT each need a port of their own (usually 2049 and 20048)\n",
            "\(result.stderr)")
    }

    @Test func configCanBeGivenAsOption() throws {
        let (result, _, _) = try self.check("[server]\nnfs_port = 2049\n", arguments: [])
        #expect(result.succeeded, "\(result.stderr)")
        let conflicting = try runSplit(strataBinary, ["check-config", "/a.toml", "--config", "/b.toml"])
        #expect(conflicting.status != 0 && conflicting.stderr.contains("give the file once"), "\(conflicting.stderr)")
    }
}

/// Command-line overrides go through the checks of the file, and their errors name the option.
@Suite struct OverrideCheckTests {
    @Test(arguments: [
        (["--nfs-port", "70000"], "--nfs-port 70000: a port number from 0 to 65535 (0 picks a free port)"),
        (["--mount-port", "99999"], "--mount-port 99999: a port number from 0 to 65535 (0 picks a free port)"),
        (
            ["--listen", "bogus"],
            "--listen bogus: an IPv4 or IPv6 address such as 0.0.0.0, 127.0.0.1 or :: (host names are not taken; repeat --listen for several)"
        ),
        (["--portmapper", "never"], "--portmapper never: one of \"auto\", \"system\", \"builtin\", \"off\""),
        (
            ["--nfs-port", "3049", "--mount-port", "3049"],
            "--mount-port 3049: the same port as --nfs-port; NFS and MOUNT each need a port of their own (usually 2049 and 20048)"
        ),
    ])
    func badOverridesAreRefusedBeforeServing(arguments: [String], message: String) throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        try threeLayerConfig().replacingOccurrences(of: "@DIR@", with: directory.path).write(
            toFile: directory.file("strata.toml"), atomically: true, encoding: .utf8)
        let result = try runSplit(
            strataBinary, ["serve", "--config", directory.file("strata.toml")] + arguments, timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr == message + "\n", "\(result.stderr)")
        #expect(!result.stderr.contains("USAGE"))
    }
}

/// Start-up failures say which port and which setting to change.
@Suite struct StartupTests {
    @Test(arguments: ["nfs_port", "mount_port"])
    func aTakenPortIsNamedWithItsKey(key: String) throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        // Hold a TCP port, then ask strata to serve on it.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(holder, pointer, length) == 0 && listen(holder, 1) == 0
                    && getsockname(holder, pointer, &length) == 0
            }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let config = threeLayerConfig()
            .replacingOccurrences(of: "\(key) = 0", with: "\(key) = \(port)")
            .replacingOccurrences(of: "@DIR@", with: directory.path)
        try config.write(toFile: directory.file("strata.toml"), atomically: true, encoding: .utf8)
        let result = try run(strataBinary, ["serve", "--config", directory.file("strata.toml")], timeout: 30)
        #expect(!result.succeeded)
        #expect(result.output.contains("\(port)") && result.output.contains(key), "\(result.output)")
    }
}
