import ArgumentParser
import Foundation
import StrataServer
import Union

/// Sends one request to the running server's control socket and returns its answer.
/// `timeout`: seconds to wait for the answer (a publish fingerprints whole images).
func askServer(_ request: ControlRequest, configuration: Configuration, timeout: Int = 60) throws -> ControlResponse {
    do {
        return try askControlSocket(path: controlSocketPath(configuration), request: request, timeout: timeout)
    } catch let error as AdministrationError {
        throw RuntimeError(error.description)
    }
}

/// What `answer` takes from the server's response to `request`; fails with the server's reason when it refused or
/// left that out.
func askServer<T>(
    _ request: ControlRequest, configuration: Configuration, for answer: (ControlResponse) -> T?
) throws -> T {
    let response = try askServer(request, configuration: configuration)
    guard response.ok, let value = answer(response) else {
        throw RuntimeError(response.error ?? "the server refused the request")
    }
    return value
}

/// `value` as indented JSON with sorted keys, on standard output.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

struct Clients: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "List the clients of per-client exports: key, export, upper layer, size, last seen, mounted, image version."
    )

    @Option(name: .long, help: "The server's TOML configuration file.")
    var config: String = defaultConfigPath

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let configuration = try loadConfiguration(self.config)
        let clients = try askServer(ControlRequest(command: "clients"), configuration: configuration) { $0.clients }
        if self.json { return try printJSON(clients) }
        print("KEY\tEXPORT\tUPPER\tSIZE\tLAST SEEN\tMOUNTED\tVERSION")
        let formatter = ISO8601DateFormatter()
        for client in clients {
            let seen = client.lastSeen.map { formatter.string(from: Date(timeIntervalSince1970: $0)) } ?? "-"
            print(
                "\(client.key)\t\(client.export)\t\(client.upper)\t\(client.sizeBytes)\t\(seen)\t\(client.isMounted ? "yes" : "no")\t\(client.version.map(String.init) ?? "-")"
            )
        }
    }
}

struct Client: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Administer one client.", subcommands: [Reset.self])

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-image a client: empty its upper layer atomically; its old handles go stale.")

        @Argument(help: "The client key (as `strata clients` shows it).")
        var key: String

        @Option(name: .long, help: "The server's TOML configuration file.")
        var config: String = defaultConfigPath

        @Option(name: .long, help: "Only this export (default: every per-client export).")
        var export: String?

        func run() throws {
            let configuration = try loadConfiguration(self.config)
            let response = try askServer(
                ControlRequest(command: "reset", key: self.key, export: self.export), configuration: configuration)
            guard response.ok else { throw RuntimeError(response.error ?? "the server refused the request") }
            let uppers = response.reset ?? []
            // A typo in the key must not look like a successful re-image.
            guard !uppers.isEmpty else {
                let scope = self.export.map { "export \($0)" } ?? "any per-client export"
                throw RuntimeError(
                    "no client \(self.key) in \(scope): it has no upper layer; `strata clients` lists the keys")
            }
            print("reset \(uppers.joined(separator: ", "))")
        }
    }
}
