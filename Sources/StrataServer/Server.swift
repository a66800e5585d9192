import Foundation
import Logging
import NFS3
import NIOCore
import NIOPosix
import ServiceLifecycle
import SunRPC
import SunRPCClient
import Union
import UnixSignals

/// The ports a started server actually listens on (port 0 in the configuration picks free ones).
public struct ListeningPorts: Sendable, Equatable {
    public var nfs: Int
    public var mount: Int
    /// 111 when the builtin portmapper serves, nil otherwise.
    public var portmapper: Int?
    public var portmapperMode: PortmapperMode
}

/// A running Strata server: the NFS and MOUNT programs on their ports, the portmapper
/// registration, and the export registry behind them.
public final class StrataServer: Sendable {
    public let registry: ExportRegistry
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let threadPool: NIOThreadPool
    let rpcServers: [RPCServer]
    let registrations: [RPCRegistration]
    public let ports: ListeningPorts
    public let metrics: ServerMetrics
    let metricsEndpoint: MetricsEndpoint?
    let control: ControlSocket
    let reloader: Reloader
    let lock: StateDirectoryLock
    let trace: CallTrace?

    /// Starts serving `configuration`. Fails with an error naming the port and the key to
    /// change if a port is taken, or the other server's pid if one serves the same state
    /// directory. `logControl` lets a reload change the log level and format; `reloadSource`
    /// reads the configuration again for `strata reload` and SIGHUP.
    public static func start(
        configuration: Configuration, logger: Logger, logControl: LogControl? = nil,
        reloadSource: (@Sendable () throws -> Configuration)? = nil, trace: CallTrace? = nil
    ) async throws -> StrataServer {
        let settings = configuration.server
        raiseDescriptorLimit(logger: logger)
        do {
            try FileManager.default.createDirectory(
                atPath: settings.stateDirectory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw StartupError(
                message: "cannot create server.state_dir \(settings.stateDirectory): \(error.localizedDescription)")
        }
        // Before anything else touches the state directory or binds a port: a second server
        // must fail naming the first, not on a busy port or by taking its control socket.
        let lock = try StateDirectoryLock.acquire(stateDirectory: settings.stateDirectory)
        do {
            try ControlSocket.refuseIfAnswering(path: controlSocketPath(configuration))
        } catch {
            lock.release()
            throw error
        }
        let registry = ExportRegistry(configuration: configuration, logger: logger)
        let reloader = Reloader(
            configuration: configuration, registry: registry, logger: logger, logControl: logControl,
            source: reloadSource)
        let metrics = ServerMetrics()
        metrics.observeUnion { [registry] in registry.unionStatistics }
        metrics.observeChanges { [registry] in registry.changeStatistics }
        metrics.observeImages { [registry] in registry.imageMetrics() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, min(4, System.coreCount)))
        let threadPool = NIOThreadPool(numberOfThreads: settings.threads)
        threadPool.start()
        // A worker sleeping on a group commit or a shared fsync frees its connection's worker slot meanwhile, so the
        // changes arriving during a flush run and share the next one (Docs/CRASH-ORDER.md).
        BlockingWaits.install { wait in RPCWorker.blocking(wait) }
        registry.startClosingIdleNamespaces { work in _ = try? await threadPool.runIfActive(work) }
        registry.prepareForFirstMounts()
        var servers: [RPCServer] = []
        do {
            var rpcConfiguration = RPCServerConfiguration(
                maxRecordBytes: settings.maxRecordBytes, threadPoolSize: settings.threads)
            rpcConfiguration.portSettingHint = "set [server] nfs_port in the configuration or pass --nfs-port"
            let writeVerifier = WriteVerifier.forThisStart()
            let nfsProgram = NFS3Program(
                resolver: registry, writeVerifier: writeVerifier, logger: logger,
                inlineMisses: InlineMisses(metrics: metrics),
                didTransfer: { procedure, bytes in
                    switch procedure {
                    case .read: metrics.bytesRead.increment(by: Int64(bytes))
                    case .write: metrics.bytesWritten.increment(by: Int64(bytes))
                    default: break
                    }
                })
            let mountProgram = MountProgram(registry: registry, metrics: metrics, logger: logger)
            var meteredNFS = MeteredProgram(nfs: nfsProgram, metrics: metrics)
            meteredNFS.statusName = { NFSStatus3(rawValue: $0).map { "NFS3ERR_\($0)".uppercased() } ?? "NFS3ERR_\($0)" }
            let exportPaths = ExportPathCache(registry: registry)
            meteredNFS.exportOfCall = { _, arguments in
                // Every NFSv3 call but NULL starts with the file handle it works on; its export is
                // read from the handle's header without decoding it (the call decodes it once).
                ServerFileHandle.exportID(peekingAt: arguments).flatMap(exportPaths.path)
            }
            /// Serves `program` (wrapped by `traced` when calls are traced) on every listen address; returns its port.
            func serve(
                _ program: any RPCProgramHandler, traced: (any RPCProgramHandler, CallTrace) -> TracedProgram,
                port: Int, key: String
            ) async throws -> Int {
                let server = RPCServer(
                    programs: [trace.map { traced(program, $0) } ?? program],
                    configuration: rpcConfiguration, group: group, threadPool: threadPool, logger: logger)
                servers.append(server)
                return try await bindAll(server, hosts: settings.listen, port: port, key: key)
            }
            let nfsPort = try await serve(
                meteredNFS, traced: TracedProgram.nfs, port: settings.nfsPort, key: "server.nfs_port / --nfs-port")
            rpcConfiguration.portSettingHint = "set [server] mount_port in the configuration or pass --mount-port"
            var meteredMount = MeteredProgram(mount: mountProgram, metrics: metrics)
            meteredMount.statusName = {
                MountStatus3(rawValue: $0).map { "MNT3ERR_\($0)".uppercased() } ?? "MNT3ERR_\($0)"
            }
            meteredMount.exportOfCall = { [registry] call, arguments in
                // MNT and UMNT name a directory path: the export that holds it.
                guard call.procedure == MountProcedure.mnt.rawValue || call.procedure == MountProcedure.umnt.rawValue
                else { return nil }
                var peek = arguments
                guard let path = try? DirPath(xdr: &peek) else { return nil }
                return registry.exports.filter { isSameOrInside(path.description, $0.path) }.max {
                    $0.path.count < $1.path.count
                }?.path
            }
            let mountPort = try await serve(
                meteredMount, traced: TracedProgram.mount, port: settings.mountPort,
                key: "server.mount_port / --mount-port")

            var registrations: [RPCRegistration] = []
            for transport in [RPCTransport.tcp, .udp] {
                registrations.append(
                    RPCRegistration(program: nfsProgram.program, version: 3, transport: transport, port: nfsPort))
                for version in mountProgram.versions {
                    registrations.append(
                        RPCRegistration(
                            program: mountProgram.program, version: version, transport: transport, port: mountPort))
                }
            }
            let mode = resolvePortmapperMode(
                settings.portmapper, bindHost: settings.listen.first ?? "0.0.0.0", nfsPort: nfsPort,
                mountPort: mountPort, logger: logger)
            var portmapperPort: Int?
            switch mode {
            case .system:
                // Listening on an IPv6 address: announce the tcp6/udp6 transports too.
                try SystemRPCBind.register(registrations, includeIPv6: settings.listen.contains { $0.contains(":") })
            case .builtin:
                let portmapper = BuiltinPortmapper(registrations: registrations)
                rpcConfiguration.portSettingHint =
                    "set [server] portmapper to \"system\" (with rpcbind running) or \"off\""
                let pmServer = RPCServer(
                    programs: [portmapper], configuration: rpcConfiguration, group: group, threadPool: threadPool,
                    logger: logger)
                servers.append(pmServer)
                portmapperPort = try await bindAll(
                    pmServer, hosts: settings.listen, port: 111, key: "server.portmapper (set \"system\" or \"off\")")
            case .off, .auto:
                logger.notice(
                    "no portmapper: clients must name the ports",
                    metadata: ["hint": "mount -t nfs -o vers=3,port=\(nfsPort),mountport=\(mountPort),mountproto=tcp"])
            }
            var endpoint: MetricsEndpoint?
            if let address = settings.metrics {
                endpoint = try await MetricsEndpoint.start(
                    address: address, metrics: metrics, group: group, logger: logger)
            }
            let control = try await ControlSocket.start(
                path: controlSocketPath(configuration), registry: registry, reloader: reloader, threadPool: threadPool,
                group: group, logger: logger)
            let ports = ListeningPorts(nfs: nfsPort, mount: mountPort, portmapper: portmapperPort, portmapperMode: mode)
            logger.info(
                "strata serving",
                metadata: [
                    "nfs_port": "\(nfsPort)", "mount_port": "\(mountPort)", "portmapper": "\(mode.rawValue)",
                    "exports": "\(configuration.exports.map(\.path).joined(separator: ","))",
                ])
            return StrataServer(
                registry: registry, logger: logger, group: group, threadPool: threadPool, rpcServers: servers,
                registrations: mode == .system ? registrations : [], ports: ports, metrics: metrics,
                metricsEndpoint: endpoint, control: control,
                reloader: reloader, lock: lock, trace: trace)
        } catch {
            for server in servers { try? await server.shutdown() }
            try? await threadPool.shutdownGracefully()
            try? await group.shutdownGracefully()
            lock.release()
            throw error
        }
    }

    private init(
        registry: ExportRegistry, logger: Logger, group: MultiThreadedEventLoopGroup, threadPool: NIOThreadPool,
        rpcServers: [RPCServer], registrations: [RPCRegistration], ports: ListeningPorts, metrics: ServerMetrics,
        metricsEndpoint: MetricsEndpoint?, control: ControlSocket, reloader: Reloader, lock: StateDirectoryLock,
        trace: CallTrace?
    ) {
        self.trace = trace
        self.control = control
        self.reloader = reloader
        self.lock = lock
        self.registry = registry
        self.logger = logger
        self.group = group
        self.threadPool = threadPool
        self.rpcServers = rpcServers
        self.registrations = registrations
        self.ports = ports
        self.metrics = metrics
        self.metricsEndpoint = metricsEndpoint
    }

    /// The port of the metrics endpoint, if one is configured.
    public var metricsPort: Int? { self.metricsEndpoint?.port }

    /// Binds `server` on every listen address; with port 0, the first bind picks the port and
    /// the others use the same one, so the portmapper has one port to announce.
    static func bindAll(_ server: RPCServer, hosts: [String], port: Int, key: String) async throws -> Int {
        var chosen = port
        // On Linux "::" is dual-stack: it already takes IPv4, and binding 0.0.0.0 beside it on
        // the same port would fail. Listening on both means "::" alone.
        let effective = hosts.contains("::") ? hosts.filter { $0 != "0.0.0.0" } : hosts
        for host in effective {
            do {
                chosen = try await server.bind(host: host, port: chosen)
            } catch {
                // RPCServerError already names host, port, transport and the setting to change.
                if error is RPCServerError { throw StartupError(message: "\(error)") }
                throw StartupError(
                    message:
                        "cannot listen on \(host) port \(chosen): \(error); change \(key) or stop what uses the port")
            }
        }
        return chosen
    }

    /// Reads the configuration again and applies it (SIGHUP, `strata reload`); the report
    /// lists what changed or why nothing did, and the log says the same.
    @discardableResult
    public func reload() -> ReloadReport {
        self.reloader.reloadFromSource()
    }

    /// Applies `configuration` (already validated), keeping the running values of settings
    /// that need a restart.
    @discardableResult
    public func reload(_ configuration: Configuration) -> ReloadReport {
        self.reloader.apply(configuration)
    }

    /// Unregisters from rpcbind, stops listening, closes every layer.
    public func shutdown() async {
        if !self.registrations.isEmpty {
            SystemRPCBind.unregister(self.registrations)
        }
        for server in self.rpcServers {
            try? await server.shutdown()
        }
        try? await self.metricsEndpoint?.shutdown()
        try? await self.control.shutdown()
        self.registry.closeAll()
        self.trace?.close()
        try? await self.threadPool.shutdownGracefully()
        try? await self.group.shutdownGracefully()
        self.lock.release()
        self.logger.info("strata stopped")
    }
}

extension StrataServer: Service {
    public func run() async throws { try await self.serve(onceSignalsTrapped: {}) }

    /// Serves until its service group shuts down gracefully (`strata serve`: SIGTERM or SIGINT), re-reading the
    /// configuration on each SIGHUP meanwhile (as `strata reload` does: on the thread pool, it reads files), then
    /// stops as `shutdown()` does. `ready` runs once SIGHUP is trapped: the group traps its shutdown signals before it
    /// starts its services, so from then on no signal the server handles can kill it.
    public func serve(onceSignalsTrapped ready: () throws -> Void) async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        do {
            try ready()
        } catch {
            await self.shutdown()
            throw error
        }
        for await _ in hangups.cancelOnGracefulShutdown() {
            _ = try? await self.threadPool.runIfActive { self.reload() }
        }
        await self.shutdown()
    }
}

/// A start-up failure with a message that names the thing and the fix.
public struct StartupError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { self.message }
}

/// The NFSv3 write verifier (RFC 1813 §3.3.7): different on every server start, so clients
/// resend UNSTABLE writes that a restart may have lost.
public enum WriteVerifier {
    public static func forThisStart() -> UInt64 {
        var timespec = Foundation.timespec()
        clock_gettime(CLOCK_REALTIME, &timespec)
        let nanoseconds = UInt64(timespec.tv_sec) &* 1_000_000_000 &+ UInt64(timespec.tv_nsec)
        return nanoseconds ^ UInt64.random(in: 0...UInt64.max)
    }
}

/// Raises the soft limit on open descriptors to the hard limit: the union keeps descriptors of
/// layer directories and recently used objects, per namespace.
func raiseDescriptorLimit(logger: Logger) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    let previous = limit.rlim_cur
    limit.rlim_cur = limit.rlim_max
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
        logger.debug("raised the open-file limit", metadata: ["from": "\(previous)", "to": "\(limit.rlim_max)"])
    }
}
