import ArgumentParser
import Foundation
import StrataServer

/// `strata image ...`: versions of an export's lowers, through the running server.
struct Image: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish, list, roll back and clean up versions of an export's image (its lowers).",
        subcommands: [Publish.self, List.self, Rollback.self, GC.self, Conflicts.self])

    /// Sends `request` and fails with the server's reason if it refused.
    /// Publishing walks every file of the new layers (and, at an export's first publish, of its
    /// current ones): allowed 30 minutes, as a large image on slow storage takes a while.
    static func ask(_ request: ControlRequest, config: String) throws -> ControlResponse {
        let timeout = request.command == "image-publish" ? 1800 : 120
        let response = try askServer(request, configuration: try loadConfiguration(config), timeout: timeout)
        guard response.ok else { throw RuntimeError(response.error ?? "the server refused the request") }
        return response
    }

    struct Publish: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Make the given layers the export's next version: mounted clients stay on theirs, each client moves at its next mount."
        )

        @Argument(help: "The export path (as `strata exports` shows it).")
        var export: String

        @Option(
            name: .long, parsing: .upToNextOption,
            help: "The version's layer directories, top-most first; they must not change afterwards.")
        var lowers: [String]

        @Option(name: .long, help: "The server's TOML configuration file.")
        var config: String = defaultConfigPath

        func run() throws {
            let absolute = self.lowers.map {
                $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0
            }
            let response = try Image.ask(
                ControlRequest(command: "image-publish", export: self.export, lowers: absolute), config: self.config)
            print("published \(self.export) version \(response.version ?? 0)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each export's versions, layers, size and the clients on each.")

        @Argument(help: "Only this export.")
        var export: String?

        @Option(name: .long, help: "The server's TOML configuration file.")
        var config: String = defaultConfigPath

        @Flag(name: .long, help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            let images =
                try Image.ask(ControlRequest(command: "image-list", export: self.export), config: self.config).images
                ?? []
            if self.json { return try printJSON(images) }
            if images.isEmpty {
                print("no export has image versions; `strata image publish EXPORT --lowers DIR...` makes them")
            }
            let formatter = ISO8601DateFormatter()
            for image in images {
                print("\(image.export)")
                print("VERSION\tPUBLISHED\tSIZE\tCLIENTS\tPINNED\tLOWERS")
                for version in image.versions {
                    let mark = version.number == image.newest ? "\(version.number)*" : "\(version.number)"
                    let published = formatter.string(from: Date(timeIntervalSince1970: version.publishedAt))
                    let clients = version.clients.isEmpty ? "-" : version.clients.joined(separator: ",")
                    let pinned = version.pinned.isEmpty ? "-" : version.pinned.joined(separator: ",")
                    print(
                        "\(mark)\t\(published)\t\(version.bytes)\t\(clients)\t\(pinned)\t\(version.lowers.joined(separator: " "))"
                    )
                }
            }
            if !images.isEmpty { print("* the version next mounts get") }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an older version the one next mounts get (default: the one before the newest).")

        @Argument(help: "The export path.")
        var export: String

        @Option(name: .long, help: "The version to go back to.")
        var to: Int?

        @Option(name: .long, help: "The server's TOML configuration file.")
        var config: String = defaultConfigPath

        func run() throws {
            let response = try Image.ask(
                ControlRequest(command: "image-rollback", export: self.export, version: self.to), config: self.config)
            print("\(self.export): next mounts get version \(response.version ?? 0)")
        }
    }

    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Remove versions no client is on or pinned to (never the newest); their file handles go stale.")

        @Argument(help: "Only this export.")
        var export: String?

        @Option(name: .long, help: "Remove only this version; refused, with its clients, if it is in use.")
        var version: Int?

        @Option(name: .long, help: "The server's TOML configuration file.")
        var config: String = defaultConfigPath

        func run() throws {
            guard self.version == nil || self.export != nil else { throw ValidationError("--version needs an export") }
            let reports =
                try Image.ask(
                    ControlRequest(command: "image-gc", export: self.export, version: self.version), config: self.config
                ).collected ?? []
            for report in reports {
                let removed =
                    report.removed.isEmpty
                    ? "nothing" : "version " + report.removed.map(String.init).joined(separator: ", ")
                print("\(report.export): removed \(removed); kept \(report.kept.joined(separator: " | "))")
            }
        }
    }

    struct Conflicts: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Names a client's own changes hide in the version it moved to (it changed them; so did the new version)."
        )

        @Argument(help: "The export path.")
        var export: String

        @Argument(help: "The client key (as `strata clients` shows it).")
        var key: String

        @Option(name: .long, help: "The server's TOML configuration file.")
        var config: String = defaultConfigPath

        @Flag(name: .long, help: "Print JSON.")
        var json = false

        func run() throws {
            guard
                let report = try Image.ask(
                    ControlRequest(command: "image-conflicts", key: self.key, export: self.export), config: self.config
                ).conflicts
            else { throw RuntimeError("the server sent no report") }
            if self.json { return try printJSON(report) }
            guard let from = report.from else {
                print(
                    "client \(report.client) is on version \(report.to) and has not moved since the export got versions"
                )
                return
            }
            print("client \(report.client): version \(from) → \(report.to), \(report.names.count) conflict(s)")
            for name in report.names { print("  /\(name)") }
        }
    }
}
