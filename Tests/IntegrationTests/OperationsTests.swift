import Foundation
import NFS3
import TestSupport
import Testing

/// One server per state directory: a second `serve` names the first and leaves its control
/// socket alone.
@Suite struct StateDirectoryLockTests {
    @Test func aSecondServerOnTheSameStateDirectoryIsRefused() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        let directory = server.directory
        defer { server.stop() }
        let second = try runSplit(strataBinary, ["serve", "--config", server.configPath], timeout: 30)
        #expect(second.status == 1)
        #expect(
            second.stderr
                == "Error: another strata server (pid \(server.pid)) is serving state directory \(directory.path)/state (it holds \(directory.path)/state/server.lock); stop it first, or give this server its own server.state_dir (--state-dir)\n",
            "\(second.stderr)")
        // The first server still answers on its control socket.
        let exports = try run(strataBinary, ["exports", "--config", server.configPath])
        #expect(exports.succeeded && exports.output.contains("/union"), "\(exports.output)")
        // After it stops (or crashes), the directory is free again.
        server.crash()
        try server.restart()
        #expect(server.isRunning)
    }

    @Test func aLiveControlSocketIsNeverTakenOver() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        let socket = directory.file("control.sock")
        let server = try ServerProcess(
            config: threeLayerConfig(server: "control_socket = \"\(socket)\""), directory: directory)
        defer { server.stop() }
        let other = threeLayerConfig(server: "control_socket = \"\(socket)\"")
            .replacingOccurrences(of: "@DIR@/state", with: "@DIR@/state2")
            .replacingOccurrences(of: "@DIR@", with: directory.path)
        try other.write(toFile: directory.file("other.toml"), atomically: true, encoding: .utf8)
        let second = try runSplit(strataBinary, ["serve", "--config", directory.file("other.toml")], timeout: 30)
        #expect(second.status == 1)
        #expect(
            second.stderr
                == "Error: another strata server answers on the control socket \(socket); give this server its own server.control_socket (or leave it unset: <state_dir>/control.sock)\n",
            "\(second.stderr)")
        let clients = try run(strataBinary, ["exports", "--config", server.configPath])
        #expect(clients.succeeded, "the first server's socket must still answer: \(clients.output)")
    }
}

/// `strata reload` and `strata exports` through the control socket.
@Suite struct ReloadCommandTests {
    @Test func reloadPrintsWhatChanged() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        let directory = server.directory
        defer { server.stop() }
        let client = try NFSTestClient(server: server)
        #expect(try client.getattr(FileHandle3([9, 9, 9, 9, 9, 9, 9, 9, 9])).status == .badhandle)
        #expect(!server.log.contains("debug bad file handle"), "log_level = info hides debug lines")
        try server.writeConfig(
            threeLayerConfig(clients: "\"127.0.0.0/8(ro,insecure)\"").replacingOccurrences(
                of: "log_level = \"info\"", with: "log_level = \"debug\"\nthreads = 4")
                    + """

                    [[export]]
                    path = "/added"
                    lowers = ["@DIR@/lower2"]
                    clients = ["127.0.0.0/8(ro,insecure)"]
                    """)
        let result = try runSplit(strataBinary, ["reload", "--config", server.configPath])
        #expect(result.succeeded, "\(result.stderr)")
        #expect(
            result.stdout == """
                reloaded \(server.configPath)
                  export /union: rule 127.0.0.0/8(rw,no_root_squash,insecure) → 127.0.0.0/8(ro,insecure)
                  export /added added (lowers \(directory.path)/lower2; rules 127.0.0.0/8(ro,insecure))
                  server.log_level: info → debug
                  not applied: server.threads: 64 → 4 takes effect after a restart (systemctl restart strata)

                """, "\(result.stdout)")
        #expect(server.log.contains("configuration reloaded"))
        #expect(try client.getattr(FileHandle3([9, 9, 9, 9, 9, 9, 9, 9, 9])).status == .badhandle)
        try waitFor("a debug line after the reload", timeout: 10) { server.log.contains("debug bad file handle") }
        let exports = try run(strataBinary, ["exports", "--config", server.configPath])
        let ids = try #require(
            try run(strataBinary, ["exports", "--json", "--config", server.configPath]).output.data(using: .utf8))
        let reports = try #require(try JSONSerialization.jsonObject(with: ids) as? [[String: Any]])
        let idOf = Dictionary(
            uniqueKeysWithValues: reports.compactMap { report in
                (report["path"] as? String).map { ($0, report["id"] as? Int ?? -1) }
            })
        #expect(
            exports.output == """
                /union\t127.0.0.0/8(ro,root_squash,insecure,anonuid=65534,anongid=65534)
                      \tid: \(idOf["/union"] ?? -1)
                      \tlowers: \(directory.path)/lower1, \(directory.path)/lower2
                      \tupper: \(directory.path)/upper
                /added\t127.0.0.0/8(ro,root_squash,insecure,anonuid=65534,anongid=65534)
                      \tid: \(idOf["/added"] ?? -1)
                      \tlowers: \(directory.path)/lower2
                      \tupper: (none: read-only)

                """, "\(exports.output)")
        #expect(Set(idOf.values).count == 2 && !idOf.values.contains(-1), "\(idOf)")
        let again = try runSplit(strataBinary, ["reload", "--config", server.configPath])
        #expect(again.stdout.hasPrefix("reloaded \(server.configPath): no changes\n"), "\(again.stdout)")
    }

    @Test func reloadOfABadFileFailsAndKeepsTheRunningConfiguration() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        defer { server.stop() }
        try server.writeConfig(
            threeLayerConfig(clients: "\"127.0.0.0/8(rw,nosquash)\"").replacingOccurrences(
                of: "portmapper = \"off\"", with: "portmapper = \"never\""))
        let result = try runSplit(strataBinary, ["reload", "--config", server.configPath])
        #expect(result.status == 1)
        #expect(
            result.stderr == """
                \(server.configPath):5: server.portmapper = "never": one of "auto", "system", "builtin", "off"
                \(server.configPath):14: export[0].clients = "127.0.0.0/8(rw,nosquash)": unknown option "nosquash"; options are \(ConfigCheckMessageTests.options)
                configuration not reloaded: the server keeps running the previous one

                """, "\(result.stderr)")
        let client = try NFSTestClient(server: server)
        #expect(try client.create("still-writable").status == .ok, "the running rules stay")
    }
}

/// Logs name the client, port, export, rule and fix; formats for people and for machines.
@Suite struct OperatorLogTests {
    @Test func aRefusalNamesTheRuleAndTheFix() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig(clients: "\"127.0.0.2(rw)\""))
        defer { server.stop() }
        // From 127.0.0.2 on an unprivileged port: the rule matches but is `secure`.
        #expect(throws: NFSTestClient.MountRefused.self) { try NFSTestClient(server: server, localHost: "127.0.0.2") }
        try waitFor("the refusal in the log", timeout: 10) { server.log.contains("MNT refused") }
        let tooWeak = try #require(server.log.split(separator: "\n").first { $0.contains("MNT refused") })
        let port = try #require(tooWeak.firstMatch(of: /port (\d+),/)?.1)
        #expect(
            tooWeak.contains(
                "MNT refused: client 127.0.0.2 port \(port), export /union: source port \(port) is not privileged: add insecure to rule 127.0.0.2(rw)"
            ),
            "\(tooWeak)")
        // From 127.0.0.3: no rule at all.
        #expect(throws: NFSTestClient.MountRefused.self) { try NFSTestClient(server: server, localHost: "127.0.0.3") }
        try waitFor("the second refusal", timeout: 10) { server.log.contains("no rule matches 127.0.0.3") }
        #expect(
            server.log.contains(
                "export /union: no rule matches 127.0.0.3 (rules: 127.0.0.2(rw)); add one for it to export[0].clients if it should mount"
            ), "\(server.log)")
    }

    @Test func aMissingLayerIsNamedByItsPath() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        let directory = server.directory
        defer { server.stop() }
        try FileManager.default.removeItem(atPath: directory.file("lower2"))
        #expect(throws: NFSTestClient.MountRefused.self) { try NFSTestClient(server: server) }
        try waitFor("the refusal in the log", timeout: 10) { server.log.contains("MNT refused") }
        #expect(
            server.log.contains(
                "export /union: its layers cannot be opened: lower layer \(directory.path)/lower2: No such file or directory; create it or fix export[0].lowers"
            ),
            "\(server.log)")
    }

    @Test func jsonLogsAreOneObjectALine() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig(server: "log_format = \"json\""))
        server.stop()
        let lines = server.log.split(separator: "\n")
        #expect(lines.count >= 2, "\(server.log)")
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String && object?["time"] is String, "\(line)")
        }
        #expect(lines.contains { $0.contains("\"message\":\"strata serving\"") }, "\(server.log)")
    }

    @Test func underSystemdLinesCarryJournalPriorities() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        try threeLayerConfig().replacingOccurrences(of: "@DIR@", with: directory.path).write(
            toFile: directory.file("strata.toml"), atomically: true, encoding: .utf8)
        // JOURNAL_STREAM names the device and inode of stderr, as systemd sets it.
        let logPath = directory.file("journal.log")
        try Data().write(to: URL(fileURLWithPath: logPath))
        var info = stat()
        #expect(stat(logPath, &info) == 0)
        var environment = ProcessInfo.processInfo.environment
        environment["JOURNAL_STREAM"] = "\(info.st_dev):\(info.st_ino)"
        let child = try Subprocess(
            [
                strataBinary, "serve", "--config", directory.file("strata.toml"), "--ready-file",
                directory.file("ready"),
            ],
            output: .file(directory.file("stdout.log")), error: .file(logPath), environment: environment)
        try waitFor("the server to serve", timeout: 30) { directory.exists("ready") || !child.isRunning }
        child.terminate()
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        #expect(log.contains("<6>info strata serving"), "info is priority 6, and the journal adds the time: \(log)")
        #expect(log.split(separator: "\n").allSatisfy { $0.hasPrefix("<") }, "\(log)")
    }
}

/// Metrics: error statuses, exports, build and process.
@Suite struct MetricsEndpointTests {
    @Test func metricsNameErrorsExportsBuildAndProcess() throws {
        let server = try ServerProcess(threeLayers: DisklessTests.config(metrics: true))
        defer { server.stop() }
        let client = try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.2")
        #expect(try client.lookup("no-such-file").status == .noent)
        let port = try #require(server.metricsPort)
        let text = try fetch("http://127.0.0.1:\(port)/metrics")
        #expect(
            text.contains("strata_rpc_errors_total{program=\"nfs\",procedure=\"LOOKUP\",status=\"NFS3ERR_NOENT\"} 1"),
            "\(text.prefix(4000))")
        #expect(text.contains("strata_export_calls_total{export=\"/diskless\"}"), "\(text.prefix(4000))")
        #expect(text.contains("strata_export_errors_total{export=\"/diskless\"} 1"), "\(text.prefix(4000))")
        // A refused MNT counts against the export it asked for.
        #expect(throws: NFSTestClient.MountRefused.self) {
            try NFSTestClient(server: server, export: "/diskless", localHost: "127.0.0.9")
        }
        let after = try fetch("http://127.0.0.1:\(port)/metrics")
        #expect(
            after.contains("strata_rpc_errors_total{program=\"mount\",procedure=\"MNT\",status=\"MNT3ERR_ACCES\"} 1"),
            "\(after.prefix(4000))")
        #expect(after.contains("strata_export_errors_total{export=\"/diskless\"} 2"), "\(after.prefix(4000))")
        #expect(text.contains("strata_build_info{version=\""), "\(text.prefix(4000))")
        for name in [
            "process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total", "process_max_fds",
        ] {
            #expect(text.contains("\n\(name) "), "\(name) missing")
        }
        let head = try run(
            "python3",
            [
                "-c",
                "import urllib.request,sys; r=urllib.request.urlopen(urllib.request.Request(sys.argv[1], method='HEAD'), timeout=10); print(r.status, r.headers['Content-Length'], len(r.read()))",
                "http://127.0.0.1:\(port)/metrics",
            ], timeout: 30)
        #expect(head.output.hasPrefix("200 "), "\(head.output)")
        #expect(head.output.hasSuffix(" 0\n"), "HEAD carries no body: \(head.output)")
    }
}

/// Habits of a command-line tool: --version, one-line runtime errors, failures that fail.
@Suite struct CommandLineTests {
    @Test func versionIsPrinted() throws {
        let result = try run(strataBinary, ["--version"])
        #expect(result.succeeded)
        #expect(result.output.hasPrefix("strata "), "\(result.output)")
    }

    @Test func theDefaultConfigurationIsTheInstalledOne() throws {
        let result = try runSplit(strataBinary, ["check-config", "--help"])
        #expect(result.stdout.contains("/etc/strata/strata.toml"), "\(result.stdout)")
    }

    @Test func aRuntimeErrorIsOneLineWithoutUsage() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        try threeLayerConfig().replacingOccurrences(of: "@DIR@", with: directory.path).write(
            toFile: directory.file("strata.toml"), atomically: true, encoding: .utf8)
        let result = try runSplit(strataBinary, ["clients", "--config", directory.file("strata.toml")])
        #expect(result.status == 1)
        #expect(
            result.stderr
                == "Error: no strata server answers on \(directory.path)/state/control.sock (No such file or directory); start it with `strata serve --config FILE`, or check server.state_dir / server.control_socket\n",
            "\(result.stderr)")
    }

    @Test func resettingAnUnknownClientFails() throws {
        let server = try ServerProcess(threeLayers: DisklessTests.config())
        defer { server.stop() }
        let result = try runSplit(strataBinary, ["client", "reset", "no-such-client", "--config", server.configPath])
        #expect(result.status == 1)
        #expect(
            result.stderr
                == "Error: no client no-such-client in any per-client export: it has no upper layer; `strata clients` lists the keys\n",
            "\(result.stderr)")
    }
}

/// The packaging files agree with the code: they are not built here (no Docker engine, no
/// systemd), so what can be read is checked.
@Suite struct PackagingTests {
    @Test func theDockerImageSatisfiesTheToolsVersionOfPackageSwift() throws {
        let dockerfile = try String(contentsOfFile: "\(packageRoot)/Docker/Dockerfile", encoding: .utf8)
        let image = try #require(dockerfile.firstMatch(of: /FROM swift:(\d+)\.(\d+)/))
        let imageVersion = (Int(image.1) ?? 0, Int(image.2) ?? 0)
        // Dependencies resolved by Package.swift declare tools 6.2 (swift-log, swift-collections).
        #expect(imageVersion >= (6, 2), "\(image.0)")
        let manifest = try String(contentsOfFile: "\(packageRoot)/Package.swift", encoding: .utf8)
        let tools = try #require(manifest.firstMatch(of: /swift-tools-version:(\d+)\.(\d+)/))
        #expect(imageVersion >= (Int(tools.1) ?? 0, Int(tools.2) ?? 0))
        let toml = try String(contentsOfFile: "\(packageRoot)/Docker/strata.toml", encoding: .utf8)
        #expect(toml.contains("portmapper = \"auto\""))
        let readme = try String(contentsOfFile: "\(packageRoot)/Docker/README.md", encoding: .utf8)
        #expect(readme.contains("nolock"))
    }

    @Test func theComposeFileMountsFoldersThatExist() throws {
        let compose = try String(contentsOfFile: "\(packageRoot)/Docker/compose.yaml", encoding: .utf8)
        let folders = compose.matches(of: /- \.\/(layers\/[a-z]+):/).map { String($0.1) }
        #expect(folders.count == 2, "\(compose)")
        for folder in folders {
            var isDirectory: ObjCBool = false
            #expect(
                FileManager.default.fileExists(atPath: "\(packageRoot)/Docker/\(folder)", isDirectory: &isDirectory)
                    && isDirectory.boolValue, "\(folder)")
        }
    }

    @Test func theUnitChecksBeforeStartingAndReloadsThroughTheServer() throws {
        let unit = try String(contentsOfFile: "\(packageRoot)/Config/strata.service", encoding: .utf8)
        #expect(unit.contains("ExecStartPre=/usr/local/bin/strata check-config --config /etc/strata/strata.toml"))
        #expect(unit.contains("ExecReload=/usr/local/bin/strata reload --config /etc/strata/strata.toml"))
    }
}

/// `make install` puts the binary, the unit, a configuration that passes check-config and the
/// docs where the unit expects them (install-files: the same steps on the binary under test).
@Suite struct InstallTests {
    @Test func installPlacesEverythingTheUnitNames() throws {
        let destination = try TemporaryDirectory()
        let result = try run(
            "make",
            [
                "-C", packageRoot, "install-files", "BIN=\(strataBinary)", "DESTDIR=\(destination.path)",
                "PREFIX=/opt/strata",
            ], timeout: 120)
        #expect(result.succeeded, "\(result.output)")
        for file in [
            "opt/strata/bin/strata", "etc/systemd/system/strata.service", "etc/strata/strata.toml",
            "opt/strata/share/doc/strata/README.md",
            "opt/strata/share/doc/strata/commands.txt", "opt/strata/share/doc/strata/examples/diskless.toml",
        ] {
            #expect(destination.exists(file), "\(file) missing")
        }
        let unit = destination.read("etc/systemd/system/strata.service") ?? ""
        #expect(
            unit.contains("ExecStartPre=/opt/strata/bin/strata check-config --config /etc/strata/strata.toml"),
            "\(unit)")
        #expect(unit.contains("ExecReload=/opt/strata/bin/strata reload --config /etc/strata/strata.toml"), "\(unit)")
        #expect(destination.read("opt/strata/share/doc/strata/commands.txt")?.contains("== strata reload ==") == true)
        let check = try run(
            destination.file("opt/strata/bin/strata"),
            ["check-config", "--skip-paths", "--config", destination.file("etc/strata/strata.toml")])
        #expect(check.succeeded, "\(check.output)")
        // A second install keeps the operator's configuration.
        try "# edited\n[server]\n".write(
            toFile: destination.file("etc/strata/strata.toml"), atomically: true, encoding: .utf8)
        let again = try run(
            "make", ["-C", packageRoot, "install-files", "BIN=\(strataBinary)", "DESTDIR=\(destination.path)"],
            timeout: 120)
        #expect(again.succeeded, "\(again.output)")
        #expect(destination.read("etc/strata/strata.toml") == "# edited\n[server]\n")
    }
}
