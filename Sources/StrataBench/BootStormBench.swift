import Basics
import BootTrace
import Foundation
import NFS3
import NFS3Client
import NIOCore
import NIOPosix
import SunRPC

/// `strata bench boot`: a recorded boot replayed by N clients at once against any NFSv3
/// server, each client on its own loopback source address (so per-client uppers and access
/// rules apply), with the server's CPU and memory watched by pid.
public struct BootStormBench: Sendable {
    public var host: String
    public var nfsPort: Int
    public var mountPort: Int
    /// The export client n (1-based) mounts; `{n}` is replaced by n (one export per client).
    public var export: String
    /// The first client's source address; client n uses the n-th address from it.
    public var firstSource: String
    public var clients: Int
    public var serverPID: Int32?
    /// How long to wait after the storm, clients still mounted and idle, before reading the
    /// server's resident memory again.
    public var settle: Duration = .milliseconds(500)
    /// Each client mounts once before the storm (not timed): per-client uppers already exist
    /// when the room powers on, as overlay directories made by hand do for the incumbent.
    public var premount = false

    public init(
        host: String, nfsPort: Int, mountPort: Int, export: String, firstSource: String, clients: Int, serverPID: Int32?
    ) {
        (self.host, self.nfsPort, self.mountPort, self.export, self.firstSource, self.clients, self.serverPID) =
            (host, nfsPort, mountPort, export, firstSource, clients, serverPID)
    }

    /// The result of one storm: the replay's figures, the server's and the load generator's.
    public struct Result: Sendable, Codable {
        public var storm: BootStorm.Report
        public var serverCPUSeconds: Double?
        public var serverPeakRSSBytes: Int?
        public var serverRSSBeforeBytes: Int?
        public var serverRSSAfterBytes: Int?
        /// (RSS after the storm, clients mounted and idle - RSS before) / clients.
        public var serverRSSPerClientBytes: Int?
        public var clientCPUSeconds: Double
        /// Microseconds of CPU per call, the server's and the load generator's.
        public var serverCPUPerCallMicroseconds: Double?
        public var clientCPUPerCallMicroseconds: Double
        /// The host's busy CPU over the storm (`HostSample`), in seconds and per call, and as a share of its CPUs.
        public var hostCPUSeconds: Double?
        public var hostCPUPerCallMicroseconds: Double?
        public var hostBusyPercent: Double?
    }

    /// The n-th address after `first` (IPv4 only: loopback clients).
    public static func sourceAddress(_ first: String, plus n: Int) -> String? {
        let parts = first.split(separator: ".").compactMap { UInt32($0) }
        guard parts.count == 4, parts.allSatisfy({ $0 < 256 }) else { return nil }
        let value = (parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]) &+ UInt32(n)
        return "\(value >> 24).\(value >> 16 & 255).\(value >> 8 & 255).\(value & 255)"
    }

    public func run(script: BootScript, group: EventLoopGroup) async throws -> Result {
        guard Self.sourceAddress(self.firstSource, plus: 0) != nil else {
            throw BenchError("--source \(self.firstSource) is not an IPv4 address")
        }
        let before = self.serverPID.flatMap { ProcessSample.read(pid: $0) }
        if self.serverPID != nil && before == nil {
            throw BenchError("--watch-pid \(self.serverPID!): no such process")
        }
        if self.premount { try await self.mountEveryClient(group: group) }
        let watch = self.serverPID.map { ProcessWatch(pid: $0) }
        let ownBefore = ProcessSample.ownProcess()
        let hostBefore = HostSample.read()
        let opened = OpenedConnections()
        let (host, nfsPort, mountPort, first, export) = (
            self.host, self.nfsPort, self.mountPort, self.firstSource, self.export
        )
        let report = await BootStorm.run(
            script: script, clients: self.clients,
            export: { export.replacingOccurrences(of: "{n}", with: "\($0 + 1)") },
            connect: { client in
                let source = Self.sourceAddress(first, plus: client)!
                let credential = RPCCredential.unix(uid: 0, gid: 0, machineName: "boot-\(client + 1)")
                // As a kernel client: MOUNT over its own connection, NFS over one more, both
                // from the client's address.
                async let nfs = RPCConnection.connect(
                    host: host, port: nfsPort, sourceAddress: source, credential: credential, timeout: .seconds(60),
                    group: group
                ).get()
                async let mount = RPCConnection.connect(
                    host: host, port: mountPort, sourceAddress: source, credential: credential, timeout: .seconds(60),
                    group: group
                ).get()
                let connections = try await (nfs, mount)
                opened.add(connections.0)
                opened.add(connections.1)
                return (ConnectionTransport(connection: connections.0), ConnectionTransport(connection: connections.1))
            })
        let ownAfter = ProcessSample.ownProcess()
        let hostAfter = HostSample.read()
        var result = Result(
            storm: report, clientCPUSeconds: ownAfter.cpuSeconds - ownBefore.cpuSeconds,
            clientCPUPerCallMicroseconds: report.calls > 0
                ? (ownAfter.cpuSeconds - ownBefore.cpuSeconds) / Double(report.calls) * 1e6 : 0)
        if let hostBefore, let hostAfter, hostAfter.totalSeconds > hostBefore.totalSeconds {
            let busy = hostAfter.busySeconds - hostBefore.busySeconds
            result.hostCPUSeconds = busy
            result.hostCPUPerCallMicroseconds = report.calls > 0 ? busy / Double(report.calls) * 1e6 : 0
            result.hostBusyPercent = busy / (hostAfter.totalSeconds - hostBefore.totalSeconds) * 100
        }
        if let watch, let before {
            let (cpu, peak, _) = watch.stop()
            // Clients mounted and idle (their connections open): what each costs the server.
            try? await Task.sleep(for: self.settle)
            let after = ProcessSample.read(pid: self.serverPID!)?.residentBytes ?? 0
            result.serverCPUSeconds = cpu
            result.serverPeakRSSBytes = peak
            result.serverRSSBeforeBytes = before.residentBytes
            result.serverRSSAfterBytes = after
            result.serverRSSPerClientBytes = self.clients > 0 ? (after - before.residentBytes) / self.clients : 0
            result.serverCPUPerCallMicroseconds = report.calls > 0 ? cpu / Double(report.calls) * 1e6 : 0
        }
        await opened.closeAll()
        return result
    }
}

extension BootStormBench {
    /// MNT from every client's address (its upper is made now), outside the storm's clock.
    func mountEveryClient(group: EventLoopGroup) async throws {
        let (host, mountPort, first, export) = (self.host, self.mountPort, self.firstSource, self.export)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for client in 0..<self.clients {
                tasks.addTask {
                    let source = Self.sourceAddress(first, plus: client)!
                    let connection = try await RPCConnection.connect(
                        host: host, port: mountPort, sourceAddress: source,
                        credential: .unix(uid: 0, gid: 0, machineName: "boot-\(client + 1)"), timeout: .seconds(120),
                        group: group
                    ).get()
                    var arguments = ByteBuffer()
                    DirPath(export.replacingOccurrences(of: "{n}", with: "\(client + 1)")).encode(xdr: &arguments)
                    var body = try await connection.call(
                        program: Mount.program, version: Mount.version3, procedure: MountProcedure.mnt.rawValue
                    ) {
                        $0.writeImmutableBuffer(arguments)
                    }.get()
                    try? await connection.close().get()
                    let status = try MountRes3(xdr: &body).status
                    guard status == .ok else { throw BenchError("--premount: MNT from \(source) answered \(status)") }
                }
            }
            try await tasks.waitForAll()
        }
    }
}

/// A replaying client's RPC over one of the load generator's connections.
struct ConnectionTransport: BootReplayTransport {
    let connection: RPCConnection
    var taskExecutor: (any TaskExecutor)? { self.connection.taskExecutor }
    func call(program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer) async throws -> ByteBuffer {
        try await self.connection.call(program: program, version: version, procedure: procedure) { buffer in
            buffer.writeImmutableBuffer(arguments)
        }.get()
    }
}

final class OpenedConnections: Sendable {
    let connections = Locked<[RPCConnection]>([])
    func add(_ connection: RPCConnection) {
        self.connections.withLock { $0.append(connection) }
    }
    func closeAll() async {
        let all = self.connections.withLock { connections in
            defer { connections = [] }
            return connections
        }
        for connection in all { try? await connection.close().get() }
    }
}

public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension BootStormBench.Result {
    /// One line for humans.
    public var line: String {
        let storm = self.storm
        var out = String(
            format:
                "boot N=%d: all booted %.2f s, boot p50 %.2f s p99 %.2f s, call p50 %.2f ms p99 %.2f ms, %d calls, %d errors, %d bytes written",
            storm.clients, storm.allBootedSeconds, storm.bootP50Seconds, storm.bootP99Seconds,
            storm.callP50Milliseconds,
            storm.callP99Milliseconds, storm.calls,
            storm.errors, storm.bytesWritten)
        if let cpu = self.serverCPUSeconds, let peak = self.serverPeakRSSBytes,
            let perClient = self.serverRSSPerClientBytes
        {
            out += String(
                format: "; server CPU %.2f s (%.0f us/call), peak RSS %.1f MiB, RSS/idle client %.0f KiB", cpu,
                self.serverCPUPerCallMicroseconds ?? 0, Double(peak) / 1048576, Double(perClient) / 1024)
        }
        out += String(
            format: "; client CPU %.2f s (%.0f us/call)", self.clientCPUSeconds, self.clientCPUPerCallMicroseconds)
        if let host = self.hostCPUSeconds {
            out += String(
                format: "; host CPU %.2f s (%.0f us/call, %.0f %% busy)", host, self.hostCPUPerCallMicroseconds ?? 0,
                self.hostBusyPercent ?? 0)
        }
        // Where the time went: the operations with the most total latency.
        let heaviest = storm.operations.sorted { $0.value.totalMilliseconds > $1.value.totalMilliseconds }.prefix(5)
        out +=
            "\n  by operation (total latency): "
            + heaviest.map {
                String(
                    format: "%@ %d calls p50 %.2f p99 %.2f ms", $0.key, $0.value.calls, $0.value.p50Milliseconds,
                    $0.value.p99Milliseconds)
            }.joined(separator: "; ")
        if !storm.bootSeconds.isEmpty {
            out +=
                "\n  where a boot goes (mean s per client, the oldest call outstanding): "
                + storm.bootSeconds.sorted { $0.value > $1.value }.prefix(8).map {
                    String(format: "%@ %.2f", $0.key, $0.value)
                }.joined(separator: ", ")
        }
        return out
    }
}
