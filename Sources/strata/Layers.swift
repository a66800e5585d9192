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
            print("layer \(self.directory) (\(report.kind == .strata ? "strata layer: tree/ + layer.db" : "plain directory"))")
            print("files: \(report.files)")
            print("directories: \(report.directories)")
            print("whiteouts: \(report.whiteouts.count)")
            for path in report.whiteouts.sorted() { print("  whiteout /\(path)") }
            print("opaque directories: \(report.opaqueDirectories.count)")
            for path in report.opaqueDirectories.sorted() { print("  opaque /\(path)") }
            print("redirects: \(report.redirects.count)")
            for (path, origin) in report.redirects.sorted(by: { $0.key < $1.key }) { print("  redirect /\(path) -> /\(origin)") }
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
        var config: String

        @Option(name: .long, help: "The per-client export (default: the first one).")
        var export: String?

        func run() throws {
            let configuration = try Configuration.load(path: self.config)
            let registry = ExportRegistry(configuration: configuration, logger: .init(label: "strata"))
            let upper = try registry.upperDirectory(forClient: self.key, exportPath: self.export)
            try LayerTools.promote(upper: upper, to: self.to)
            print("promoted \(upper) to \(self.to); list it as a lower of any export (top-most first)")
        }
    }
}
