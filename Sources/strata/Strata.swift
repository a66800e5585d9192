import ArgumentParser
import BootTrace
import Foundation
import Logging
import ServiceLifecycle
import StrataBench
import StrataServer
import SunRPC

@main
struct Strata: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "An NFSv3 server exporting a union of directory layers.",
        discussion: "Every command that reads the configuration takes --config FILE (default \(defaultConfigPath)).",
        version: "strata \(StrataBuild.version)",
        subcommands: [
            Serve.self, CheckConfig.self, Reload.self, Exports.self, Clients.self, Client.self, Layer.self, Image.self,
            Trace.self, Bench.self,
        ])
}

/// Where the packaged service keeps its configuration (`make install`, the systemd unit).
let defaultConfigPath = "/etc/strata/strata.toml"

/// A failure at run time: printed as one line `Error: ...` with exit status 1, never with the
/// usage text (which ArgumentParser prints for `ValidationError`, meant for bad arguments).
struct RuntimeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The text of the file at `path`; `unreadable` is the error when it cannot be read.
func readText(_ path: String, unreadable: @autoclosure () -> String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw RuntimeError(unreadable()) }
    return String(decoding: data, as: UTF8.self)
}

/// The boot script at `path`, parsed (its errors name the line); `unreadable` is the error when it cannot be read.
func readBootScript(_ path: String, unreadable: @autoclosure () -> String) throws -> BootScript {
    let text = try readText(path, unreadable: unreadable())
    do {
        return try BootScript.parse(text, source: path)
    } catch {
        throw RuntimeError("\(error)")
    }
}

/// Loads the configuration for a command; its errors, one a line, go to stderr, and the
/// command exits with status 1.
func loadConfiguration(
    _ path: String, overrides: ConfigurationOverrides = ConfigurationOverrides()
) throws -> Configuration {
    do {
        return try Configuration.load(path: path, overrides: overrides)
    } catch let problems as ConfigurationErrors {
        printErrors(problems.errors.map(\.description))
        throw ExitCode(1)
    }
}

func printErrors(_ lines: [String]) {
    for line in lines { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the exports of a configuration file.")

    @Option(name: .long, help: "The TOML configuration file.")
    var config: String = defaultConfigPath

    @Option(name: .long, help: "Address to listen on (repeatable); overrides server.listen.")
    var listen: [String] = []

    @Option(name: .customLong("nfs-port"), help: "NFS port; overrides server.nfs_port (0 picks a free port).")
    var nfsPort: Int?

    @Option(name: .customLong("mount-port"), help: "MOUNT port; overrides server.mount_port (0 picks a free port).")
    var mountPort: Int?

    @Option(name: .long, help: "auto | system | builtin | off; overrides server.portmapper.")
    var portmapper: String?

    @Option(name: .customLong("state-dir"), help: "State directory; overrides server.state_dir.")
    var stateDir: String?

    @Option(
        name: .customLong("ready-file"),
        help: "Once serving, write 'nfs=PORT mount=PORT' to this file (for scripts and tests).")
    var readyFile: String?

    @Option(
        name: .long,
        help:
            "Record every NFS and MOUNT call (arguments, reply, timing) to this file; off by default. Convert it with 'strata trace convert' (Docs/BOOT-TRACE.md)."
    )
    var trace: String?

    var overrides: ConfigurationOverrides {
        ConfigurationOverrides(
            listen: self.listen, nfsPort: self.nfsPort, mountPort: self.mountPort, portmapper: self.portmapper,
            stateDirectory: self.stateDir)
    }

    func run() async throws {
        let configuration = try loadConfiguration(self.config, overrides: self.overrides)
        let control = LogControl(
            level: Logger.Level(rawValue: configuration.server.logLevel) ?? .info,
            format: configuration.server.logFormat)
        LoggingSystem.bootstrap { label in StrataLogHandler(label: label, control: control) }
        let logger = Logger(label: "strata")
        for warning in configuration.warnings {
            logger.warning("configuration: \(warning)")
        }
        for problem in configuration.checkFileSystem() {
            logger.warning("configuration problem: \(problem)")
        }
        let (path, overrides) = (self.config, self.overrides)
        let server: StrataServer
        do {
            let callTrace = try self.trace.map { try CallTrace(path: $0) }
            server = try await StrataServer.start(
                configuration: configuration, logger: logger, logControl: control,
                reloadSource: { try Configuration.load(path: path, overrides: overrides) }, trace: callTrace)
        } catch let error as StartupError {
            throw RuntimeError(error.message)
        }
        // SIGINT or SIGTERM: stop cleanly (unregistered from rpcbind, layers closed); SIGHUP: reload.
        let serving = Serving(server: server, readyFile: self.readyFile)
        try await ServiceGroup(services: [serving], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
    }
}

/// `strata serve` in its service group: the server, and the ready file written once signals are handled.
struct Serving: Service {
    let server: StrataServer
    let readyFile: String?

    func run() async throws {
        try await self.server.serve(onceSignalsTrapped: {
            guard let readyFile = self.readyFile else { return }
            let ports = self.server.ports
            var line = "nfs=\(ports.nfs) mount=\(ports.mount) portmapper=\(ports.portmapperMode.rawValue)"
            if let metricsPort = self.server.metricsPort { line += " metrics=\(metricsPort)" }
            try (line + "\n").write(toFile: readyFile, atomically: true, encoding: .utf8)
        })
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration file without serving.",
        discussion: """
            Prints every error as FILE:LINE: key = value: what is allowed, on stderr, and exits 1 if \
            there is one; warnings (options accepted without effect) do not fail the check.
            """)

    @Argument(help: "The TOML configuration file (or --config FILE).")
    var file: String?

    @Option(name: .long, help: "The TOML configuration file (default \(defaultConfigPath)).")
    var config: String?

    @Flag(
        name: .customLong("skip-paths"),
        help: "Check the file only, not whether its layer directories exist or can be created.")
    var skipPaths = false

    func validate() throws {
        if let file, let config, file != config {
            throw ValidationError("give the file once: either check-config FILE or check-config --config FILE")
        }
    }

    func run() throws {
        let path = self.file ?? self.config ?? defaultConfigPath
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: path, checkingFileSystem: !self.skipPaths)
        } catch let problems as ConfigurationErrors {
            printErrors(problems.errors.map(\.description) + problems.warnings.map { "warning: \($0)" })
            throw ExitCode(1)
        }
        printErrors(configuration.warnings.map { "warning: \($0)" })
        print(
            "\(path): OK (\(configuration.exports.count) export(s): \(configuration.exports.map(\.path).joined(separator: ", ")))"
        )
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the running server re-read its configuration file; print what changed, or the errors.",
        discussion: """
            The server validates the file first: with an error nothing changes, the errors are \
            printed and the exit status is 1. Settings that need a restart are named as such.
            """)

    @Option(name: .long, help: "The server's TOML configuration file (finds its control socket).")
    var config: String = defaultConfigPath

    func run() throws {
        // The server checks the file again when it reloads; checking it here first finds the
        // control socket and answers a broken file even when no server runs.
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: self.config)
        } catch let problems as ConfigurationErrors {
            printErrors(
                problems.errors.map(\.description) + [
                    "configuration not reloaded: the server keeps running the previous one"
                ])
            throw ExitCode(1)
        }
        let response = try askServer(ControlRequest(command: "reload"), configuration: configuration)
        guard let report = response.reload else {
            throw RuntimeError(response.error ?? "the server refused the request")
        }
        printErrors(report.warnings.map { "warning: \($0)" })
        guard report.applied else {
            printErrors(report.errors + ["configuration not reloaded: the server keeps running the previous one"])
            throw ExitCode(1)
        }
        print("reloaded \(self.config)" + (report.changes.isEmpty ? ": no changes" : ""))
        for change in report.changes { print("  \(change)") }
        for line in report.needsRestart { print("  not applied: \(line)") }
    }
}

struct Exports: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the running server's exports and client rules (as exportfs -v does).")

    @Option(name: .long, help: "The server's TOML configuration file (finds its control socket).")
    var config: String = defaultConfigPath

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let configuration = try loadConfiguration(self.config)
        let exports = try askServer(ControlRequest(command: "exports"), configuration: configuration) { $0.exports }
        if self.json { return try printJSON(exports) }
        if exports.isEmpty { print("no exports") }
        for export in exports {
            let width = export.path.count
            for (index, rule) in export.effectiveRules.enumerated() {
                let lead = index == 0 ? export.path : String(repeating: " ", count: width)
                print("\(lead)\t\(rule)")
            }
            let indent = String(repeating: " ", count: width)
            print("\(indent)\tid: \(export.id)")
            print(
                "\(indent)\tlowers: \(export.lowers.isEmpty ? "(none)" : export.lowers.joined(separator: ", "))\(export.imageVersion.map { " (image version \($0))" } ?? "")"
            )
            if let upper = export.upper {
                let perClient = upper.contains("{client}") ? " (one per client, keyed by \(export.clientKey))" : ""
                print("\(indent)\tupper: \(upper)\(perClient)")
            } else {
                print("\(indent)\tupper: (none: read-only)")
            }
        }
    }
}
