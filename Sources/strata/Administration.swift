import ArgumentParser
import Foundation
import StrataServer
import Union

/// Sends one request to the running server's control socket and returns its answer.
func askServer(_ request: ControlRequest, configuration: Configuration) throws -> ControlResponse {
    let path = controlSocketPath(configuration)
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw ValidationError("socket(AF_UNIX) failed: \(String(cString: strerror(errno)))") }
    defer { close(descriptor) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let pathBytes = Array(path.utf8)
    guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        throw ValidationError("control socket path \(path) is too long; set server.control_socket to a shorter path")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in pathBytes.enumerated() { raw[index] = byte }
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard connected == 0 else {
        throw ValidationError("no strata server answers on \(path) (\(String(cString: strerror(errno)))); start it with `strata serve --config FILE`, or check server.state_dir / server.control_socket")
    }
    var timeout = timeval(tv_sec: 60, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var line = try JSONEncoder().encode(request)
    line.append(UInt8(ascii: "\n"))
    _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    var received = Data()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while !received.contains(UInt8(ascii: "\n")) {
        let count = read(descriptor, &chunk, chunk.count)
        if count <= 0 { break }
        received.append(contentsOf: chunk[0..<count])
    }
    return try JSONDecoder().decode(ControlResponse.self, from: received)
}

struct Clients: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the clients of per-client exports: key, export, upper layer, size, last seen, mounted.")

    @Option(name: .long, help: "The server's TOML configuration file.")
    var config: String

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let configuration = try Configuration.load(path: self.config)
        let response = try askServer(ControlRequest(command: "clients"), configuration: configuration)
        guard response.ok, let clients = response.clients else {
            throw ValidationError(response.error ?? "the server refused the request")
        }
        if self.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(clients), as: UTF8.self))
            return
        }
        print("KEY\tEXPORT\tUPPER\tSIZE\tLAST SEEN\tMOUNTED")
        let formatter = ISO8601DateFormatter()
        for client in clients {
            let seen = client.lastSeen.map { formatter.string(from: Date(timeIntervalSince1970: $0)) } ?? "-"
            print("\(client.key)\t\(client.export)\t\(client.upper)\t\(client.sizeBytes)\t\(seen)\t\(client.isMounted ? "yes" : "no")")
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
        var config: String

        @Option(name: .long, help: "Only this export (default: every per-client export).")
        var export: String?

        func run() throws {
            let configuration = try Configuration.load(path: self.config)
            let response = try askServer(ControlRequest(command: "reset", key: self.key, export: self.export), configuration: configuration)
            guard response.ok else { throw ValidationError(response.error ?? "the server refused the request") }
            let uppers = response.reset ?? []
            print(uppers.isEmpty ? "client \(self.key) had no upper layer" : "reset \(uppers.joined(separator: ", "))")
        }
    }
}
