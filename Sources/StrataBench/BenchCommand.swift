import ArgumentParser
import Basics
import Foundation
import NFS3
import NFS3Client
import NIOCore
import NIOPosix
import SunRPC

#if canImport(Glibc)
import Glibc
#endif

/// `strata bench [run]`: drives any NFSv3 server with the asynchronous client (NFS3Client) and
/// prints one line (or one JSON object) per timed phase, with its own CPU per call beside the
/// server's. A subcommand of `strata` (one binary to install and to point scripts at), kept in
/// its own module so the server never links it.
public struct BenchWorkloads: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Measure an NFSv3 server (Strata or any other) with an asynchronous load generator.",
        discussion: """
            Workloads (--workload, comma-separated, run in order):
            \(Workload.allCases.map { "  \($0.rawValue): \($0.summary)" }.joined(separator: "\n"))

            Every connection (-j) MNTs the export itself from its source address (--source),
            so per-client uppers and access rules apply, and resolves its own handles.
            --qd calls are in flight in total, spread over the connections. Setup (MNT,
            LOOKUPs, the directory of create) is not timed. Exit status 1 if any call failed.
            """)

    public init() {}

    @Option(name: .long, help: "The server's address.")
    var server: String = "127.0.0.1"

    @Option(name: .long, help: "The path to MNT (for ganesha: the export's Path).")
    var export: String

    @Option(name: .customLong("nfs-port"), help: "NFS port (default: ask the portmapper on port 111).")
    var nfsPort: Int?

    @Option(name: .customLong("mount-port"), help: "MOUNT port (default: ask the portmapper).")
    var mountPort: Int?

    @Option(
        name: .long, help: "Workloads, comma-separated: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: String

    @Option(
        name: .customLong("n"),
        help: ArgumentHelp("Operations of getattr, lookup, create (k/M suffixes).", valueName: "n"))
    var count: String = "10k"

    @Option(name: .long, help: "Calls in flight in total.")
    var qd: Int = 32

    @Option(name: [.customShort("j"), .customLong("connections")], help: "TCP connections (clients).")
    var connections: Int = 1

    @Option(
        name: .long,
        help:
            "Source addresses of the connections, taken in turn (repeatable): A, A-B (e.g. 127.0.0.2-127.0.0.200) or A/prefix."
    )
    var source: [String] = []

    @Flag(
        name: .customLong("privileged-port"),
        help: "Bind source ports below 1024 (for servers that require them; needs root).")
    var privilegedPort = false

    @Option(name: .long, help: "AUTH_SYS uid.")
    var uid: UInt32 = 0

    @Option(name: .long, help: "AUTH_SYS gid.")
    var gid: UInt32 = 0

    @Option(name: .long, help: "The object of getattr, lookup, readdirplus, read, write, relative to the export root.")
    var path: String?

    @Option(name: .long, help: "create, mkdir-tree: the directory to make (it must not exist).")
    var dir: String?

    @Option(name: .long, help: "Bytes to write, or to read (default: the whole file); K/M/G suffixes.")
    var size: String?

    @Option(name: .long, help: "READ/WRITE block size (at most the server's rtmax/wtmax); K/M suffixes.")
    var bs: String = "1M"

    @Option(name: .long, help: "mkdir-tree: directories.")
    var dirs: Int = 100

    @Option(name: .long, help: "mkdir-tree: files per directory.")
    var files: Int = 500

    @Option(name: .long, help: "readdirplus: listings of the tree (the first, then the warm ones).")
    var passes: Int = 3

    @Option(name: .long, help: "readdirplus: dircount.")
    var dircount: UInt32 = 8192

    @Option(name: .long, help: "readdirplus: maxcount.")
    var maxcount: UInt32 = 65536

    @Flag(name: .long, help: "create: keep the directory (the files are always removed).")
    var keep = false

    @Option(name: .customLong("watch-pid"), help: "Also report this process's CPU (the server) over each phase.")
    var watchPID: Int32?

    @Option(name: .long, help: "Event loop threads of the client.")
    var threads: Int = 1

    @Option(name: .long, help: "Seconds before a call without reply counts as failed.")
    var timeout: Int = 60

    @Flag(name: .long, help: "One JSON object per phase instead of a line.")
    var json = false

    @Option(name: .long, help: "Copied into every JSON object.")
    var label: String?

    public func validate() throws {
        guard self.qd >= 1 else { throw ValidationError("--qd must be at least 1") }
        guard self.connections >= 1 else { throw ValidationError("-j must be at least 1") }
        guard self.qd >= self.connections else {
            throw ValidationError(
                "--qd \(self.qd) is less than -j \(self.connections): every connection needs a call in flight")
        }
        guard self.threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        _ = try self.workloads()
        _ = try parseCount(self.count, option: "--n")
        _ = try parseSize(self.bs, option: "--bs")
        if let size { _ = try parseSize(size, option: "--size") }
        _ = try self.sourceAddresses()
    }

    func workloads() throws -> [Workload] {
        try self.workload.split(separator: ",").map { name in
            guard let workload = Workload(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError(
                    "--workload: unknown workload '\(name)'; known: \(Workload.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            return workload
        }
    }

    func sourceAddresses() throws -> [String] {
        try self.source.flatMap { try expandAddressRange($0) }
    }

    public func run() async throws {
        // Large READ replies and WRITE payloads (1 MiB) would otherwise be mmapped and faulted
        // in again for every call (glibc's default threshold): keep them on the heap for reuse.
        // mallopt is not in the Glibc module: looked up by name.
        if let symbol = dlsym(nil, "mallopt") {
            let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
            _ = mallopt(-3, 64 << 20)  // M_MMAP_THRESHOLD (malloc.h)
            _ = mallopt(-1, 256 << 20)  // M_TRIM_THRESHOLD
        }
        let workloads = try self.workloads()
        let sources = try self.sourceAddresses()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.threads)
        defer { group.shutdownGracefully { _ in } }
        let credential = RPCCredential.unix(uid: self.uid, gid: self.gid)
        // Ask the portmapper once, not once per connection.
        let nfsPort: Int
        if let port = self.nfsPort {
            nfsPort = port
        } else {
            nfsPort = try await Portmapper.getport(
                host: self.server, program: NFS3.program, version: NFS3.version, group: group
            ).get()
        }
        let mountPort: Int
        if let port = self.mountPort {
            mountPort = port
        } else {
            mountPort = try await Portmapper.getport(
                host: self.server, program: Mount.program, version: Mount.version3, group: group
            ).get()
        }
        var workers: [Worker] = []
        for index in 0..<self.connections {
            let source = sources.isEmpty ? nil : sources[index % sources.count]
            let client: NFS3Client
            let root: FileHandle3
            do {
                client = try await NFS3Client.connect(
                    host: self.server, nfsPort: nfsPort, mountPort: mountPort, sourceAddress: source,
                    sourcePort: self.privilegedPort ? .privileged : .any, credential: credential,
                    timeout: .seconds(Int64(self.timeout)), group: group)
                root = try await client.mount(self.export)
            } catch {
                throw BenchError(
                    "connection \(index + 1) (from \(source ?? "any address")) to \(self.server):\(nfsPort): \(error)")
            }
            // --qd spread over the connections, the first ones taking the remainder.
            let depth = self.qd / self.connections + (index < self.qd % self.connections ? 1 : 0)
            workers.append(
                Worker(client: client, index: index, connections: self.connections, queueDepth: depth, root: root))
        }
        let settings = WorkloadSettings(
            count: try parseCount(self.count, option: "--n"), path: self.path, directory: self.dir,
            size: try self.size.map { UInt64(try parseSize($0, option: "--size")) },
            blockSize: try parseSize(self.bs, option: "--bs"), dirs: self.dirs, files: self.files, passes: self.passes,
            dircount: self.dircount, maxcount: self.maxcount, keep: self.keep, tag: "\(getpid())")
        let errors = Locked(0)
        let json = self.json
        let label = self.label
        let runner = WorkloadRunner(workers: workers, settings: settings, serverPID: self.watchPID) { report in
            errors.withLock { $0 += report.errors }
            var report = report
            if let label { report.extra.insert(("label", label), at: 0) }
            FileHandle.standardOutput.write(Data(((json ? report.json : report.line) + "\n").utf8))
            if let first = report.firstError, !json {
                FileHandle.standardError.write(Data("strata bench: \(report.phase): first error: \(first)\n".utf8))
            }
        }
        do {
            for workload in workloads { try await runner.run(workload) }
        } catch {
            for worker in workers { _ = try? await worker.client.close() }
            throw BenchError("\(error)")
        }
        for worker in workers { try? await worker.client.close() }
        if errors.withLock({ $0 }) > 0 { throw ExitCode(1) }
    }
}

/// "10k" → 10000, "2M" → 2000000 (decimal, as counts).
func parseCount(_ text: String, option: String) throws -> Int {
    let multipliers: [Character: Int] = ["k": 1000, "K": 1000, "m": 1_000_000, "M": 1_000_000]
    var digits = text
    var multiplier = 1
    if let last = text.last, let factor = multipliers[last] {
        multiplier = factor
        digits = String(text.dropLast())
    }
    guard let value = Int(digits), value >= 0 else {
        throw ValidationError("\(option): '\(text)' is not a count (e.g. 5000, 10k, 1M)")
    }
    return value * multiplier
}

/// "64K" → 65536, "1M", "2G" (binary, as sizes).
func parseSize(_ text: String, option: String) throws -> Int {
    let shifts: [Character: Int] = ["k": 10, "K": 10, "m": 20, "M": 20, "g": 30, "G": 30]
    var digits = text
    var shift = 0
    if let last = text.last, let bits = shifts[last] {
        shift = bits
        digits = String(text.dropLast())
    }
    guard let value = Int(digits), value > 0 else {
        throw ValidationError("\(option): '\(text)' is not a size (e.g. 4096, 64K, 1M, 2G)")
    }
    return value << shift
}

/// "127.0.0.2" → itself; "127.0.0.2-127.0.0.9" → the eight addresses; "127.0.1.0/24" → the
/// host addresses of the network (the network and broadcast addresses left out).
func expandAddressRange(_ text: String) throws -> [String] {
    func parse(_ address: Substring) throws -> UInt32 {
        let parts = address.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { throw ValidationError("--source: '\(address)' is not an IPv4 address") }
        var value: UInt32 = 0
        for part in parts {
            guard let byte = UInt8(part) else { throw ValidationError("--source: '\(address)' is not an IPv4 address") }
            value = value << 8 | UInt32(byte)
        }
        return value
    }
    func format(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }
    let limit = 1 << 16
    if let dash = text.firstIndex(of: "-") {
        let low = try parse(text[..<dash])
        let high = try parse(text[text.index(after: dash)...])
        guard low <= high, high - low < limit else {
            throw ValidationError("--source: '\(text)' is not a range of at most \(limit) addresses")
        }
        return (low...high).map(format)
    }
    if let slash = text.firstIndex(of: "/") {
        let base = try parse(text[..<slash])
        guard let prefix = Int(text[text.index(after: slash)...]), (16...32).contains(prefix) else {
            throw ValidationError("--source: '\(text)': the prefix must be 16...32")
        }
        if prefix >= 31 { return [format(base)] }
        let size = UInt32(1) << UInt32(32 - prefix)
        let network = base & ~(size - 1)
        return (network + 1..<network + size - 1).map(format)
    }
    return [format(try parse(text[...]))]
}
