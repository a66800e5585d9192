import ArgumentParser
import Foundation
import Logging
import StrataServer
import SunRPC

@main
struct Strata: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "An NFSv3 server exporting a union of directory layers.",
        subcommands: [Serve.self, CheckConfig.self, Clients.self, Client.self, Layer.self])
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the exports of a configuration file.")

    @Option(name: .long, help: "The TOML configuration file.")
    var config: String

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

    @Option(name: .customLong("ready-file"), help: "Once serving, write 'nfs=PORT mount=PORT' to this file (for scripts and tests).")
    var readyFile: String?

    func run() async throws {
        let configuration = try self.loadConfiguration()
        let logger = makeLogger(level: configuration.server.logLevel)
        for problem in configuration.checkFileSystem() {
            logger.warning("configuration problem", metadata: ["problem": "\(problem)"])
        }
        let server = try await StrataServer.start(configuration: configuration, logger: logger)
        if let readyFile {
            let ports = server.ports
            var line = "nfs=\(ports.nfs) mount=\(ports.mount) portmapper=\(ports.portmapperMode.rawValue)"
            if let metricsPort = server.metricsPort { line += " metrics=\(metricsPort)" }
            try (line + "\n").write(toFile: readyFile, atomically: true, encoding: .utf8)
        }
        await SignalLoop.run(
            onReload: {
                do {
                    let fresh = try self.loadConfiguration()
                    try server.reload(fresh)
                } catch {
                    logger.error("configuration reload rejected; keeping the running configuration", metadata: ["error": "\(error)"])
                }
            })
        await server.shutdown()
    }

    func loadConfiguration() throws -> Configuration {
        var configuration = try Configuration.load(path: self.config)
        if !self.listen.isEmpty { configuration.server.listen = self.listen }
        if let nfsPort { configuration.server.nfsPort = nfsPort }
        if let mountPort { configuration.server.mountPort = mountPort }
        if let stateDir { configuration.server.stateDirectory = stateDir }
        if let portmapper {
            guard let mode = PortmapperMode(rawValue: portmapper) else {
                throw ValidationError("--portmapper \(portmapper): use auto, system, builtin or off")
            }
            configuration.server.portmapper = mode
        }
        return configuration
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file without serving.")

    @Argument(help: "The TOML configuration file.")
    var file: String

    @Flag(name: .customLong("skip-paths"), help: "Check the file only, not whether its layer directories exist.")
    var skipPaths = false

    func run() throws {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: self.file)
        } catch {
            print("\(error)")
            throw ExitCode(1)
        }
        let problems = self.skipPaths ? [] : configuration.checkFileSystem()
        for problem in problems {
            print("\(self.file): \(problem)")
        }
        if !problems.isEmpty { throw ExitCode(1) }
        print("\(self.file): OK (\(configuration.exports.count) export(s): \(configuration.exports.map(\.path).joined(separator: ", ")))")
    }
}

func makeLogger(level: String) -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = Logger.Level(rawValue: level) ?? .info
        return handler
    }
    return Logger(label: "strata")
}
