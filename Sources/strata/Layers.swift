import ArgumentParser
import Foundation
import StrataServer
import Union

struct Layer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect layer directories and promote client layers into shared ones.",
        subcommands: [Inspect.self, Promote.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what a layer holds: files, whiteouts, opaque directories, redirects.")

        @Argument(help: "A layer directory (a writable layer with tree/ and layer.db, or any directory).")
        var directory: String

        func run() throws {
            let report = try LayerTools.inspect(layerDirectory: self.directory)
            print(
                "layer \(self.directory) (\(report.kind == .strata ? "strata layer: tree/ + layer.db" : "plain directory"))"
            )
            print("files: \(report.files)")
            print("directories: \(report.directories)")
            print("whiteouts: \(report.whiteouts.count)")
            for path in report.whiteouts.sorted() { print("  whiteout /\(path)") }
            print("opaque directories: \(report.opaqueDirectories.count)")
            for path in report.opaqueDirectories.sorted() { print("  opaque /\(path)") }
            print("redirects: \(report.redirects.count)")
            for (path, origin) in report.redirects.sorted(by: { $0.key < $1.key }) {
                print("  redirect /\(path) -> /\(origin)")
            }
        }
    }

    struct Promote: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a client's upper layer, whiteouts included, into a new read-only layer directory.")

        @Argument(help: "The client key (as `strata clients` shows it).")
        var key: String

        @Option(name: .long, help: "The new layer directory (must not exist).")
        var to: String

        @Option(name: .long, help: "The server's TOML configuration file.")
        var config: String = defaultConfigPath

        @Option(name: .long, help: "The per-client export (default: the first one).")
        var export: String?

        func run() throws {
            let configuration = try loadConfiguration(self.config)
            let registry = ExportRegistry(configuration: configuration, logger: .init(label: "strata"))
            let upper: String
            do {
                upper = try registry.upperDirectory(forClient: self.key, exportPath: self.export)
            } catch let error as AdministrationError {
                throw RuntimeError(error.description)
            }
            try self.refuseIfInUse(upper: upper, configuration: configuration)
            try LayerTools.promote(upper: upper, to: self.to)
            print("promoted \(upper) to \(self.to); list it as a lower of any export (top-most first)")
        }

        /// A copy of a layer a client is writing is torn: refuse while the running server has
        /// the client mounted.
        func refuseIfInUse(upper: String, configuration: Configuration) throws {
            guard let pid = StateDirectoryLock.holder(stateDirectory: configuration.server.stateDirectory) else {
                return
            }
            let response: ControlResponse
            do {
                response = try askControlSocket(
                    path: controlSocketPath(configuration), request: ControlRequest(command: "clients"))
            } catch {
                throw RuntimeError(
                    "a strata server (pid \(pid)) serves \(configuration.server.stateDirectory) but does not answer on its control socket (\(error)); stop it before promoting \(upper)"
                )
            }
            if let client = response.clients?.first(where: { $0.upper == upper }), client.isMounted {
                throw RuntimeError(
                    "client \(client.key) has \(client.export) mounted from the running server (pid \(pid)) and may be writing \(upper); unmount it on the client (or stop the server) before promoting its layer"
                )
            }
        }
    }
}
