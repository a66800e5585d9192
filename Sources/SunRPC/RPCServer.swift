import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Why `RPCServer` could not start listening.
public struct RPCServerError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Another process holds the port (EADDRINUSE).
        case addressInUse
        /// Any other bind failure (permission, no such address...).
        case bindFailed
        /// `bind` after `shutdown`.
        case shutDown
    }

    public var code: Code
    public var host: String
    public var port: Int
    public var transport: RPCTransport
    public var hint: String?
    public var underlying: (any Error)?

    public var description: String {
        let what =
            "cannot listen for RPC over \(self.transport.rawValue.uppercased()) on \(self.host) port \(self.port)"
        switch self.code {
        case .addressInUse:
            return
                "\(what): the address is already in use (is another NFS server or rpc daemon running?); "
                + (self.hint ?? "choose another port")
        case .bindFailed:
            let cause = self.underlying.map { "\($0)" } ?? "unknown error"
            return "\(what): \(cause)" + (self.hint.map { "; \($0)" } ?? "")
        case .shutDown:
            return "\(what): the server has been shut down"
        }
    }
}

/// An ONC RPC v2 (RFC 5531) server over TCP (record marking) and UDP on SwiftNIO.
///
/// ```swift
/// let server = RPCServer(programs: [nfs, mount], configuration: .init(), group: group,
///                        threadPool: pool, logger: logger)
/// let port = try await server.bind(host: "0.0.0.0", port: 2049)
/// ...
/// try await server.shutdown()
/// ```
/// Handlers run on `threadPool` (which the caller starts and stops); event loops only move
/// bytes and check headers.
public final class RPCServer: Sendable {
    public let configuration: RPCServerConfiguration
    let dispatcher: RPCDispatcher
    private let group: any EventLoopGroup
    private let logger: Logger
    private let programList: [any RPCProgramHandler]
    /// `configuration.maxConnections`, or the default derived from the descriptor limit.
    public let maxConnections: Int

    private struct State {
        /// TCP listening sockets.
        var listeners: [any Channel] = []
        /// UDP sockets: they carry calls, so they are drained like connections.
        var datagramChannels: [any Channel] = []
        var connections: [ObjectIdentifier: any Channel] = [:]
        var boundPorts: [Int] = []
        var isShutDown = false
    }
    private let state = Mutex(State())

    /// - Parameters:
    ///   - programs: the programs served (distinct program numbers); calls for others are
    ///     answered PROG_UNAVAIL.
    ///   - configuration: limits; see `RPCServerConfiguration`.
    ///   - group: event loops for the sockets (only bytes move there).
    ///   - threadPool: where handlers run; started and shut down by the caller, after `shutdown`.
    ///   - logger: for connection-level events (debug) and bind messages (info).
    public init(
        programs: [any RPCProgramHandler],
        configuration: RPCServerConfiguration = RPCServerConfiguration(),
        group: any EventLoopGroup,
        threadPool: NIOThreadPool,
        logger: Logger
    ) {
        _ = Self.keepReplyBuffersMapped
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.programList = programs
        self.maxConnections = max(1, configuration.maxConnections ?? RPCServerConfiguration.defaultMaxConnections())
        self.dispatcher = RPCDispatcher(
            programs: programs,
            cacheEntries: configuration.duplicateCacheEntries,
            threadPool: threadPool,
            logger: logger
        )
    }

    /// Large replies (1 MiB READs) are allocated on pool threads and freed on the event loop once written. With
    /// glibc's defaults every such buffer came from a fresh mapping or a heap top that was trimmed again right after
    /// (`madvise`/`munmap` on each free): profiling READ showed a fifth of the server's CPU in page faults and in
    /// zeroing the pages the kernel then handed back, as much as copying the data itself. A fixed mmap threshold above
    /// the largest reply and a trim threshold above what replies keep in flight (`maxQueuedReplyBytesPerConnection`
    /// per connection) let freed reply buffers be reused as they are. Set once per process, before the first reply.
    static let keepReplyBuffersMapped: Void = {
        #if canImport(Glibc)
        // <malloc.h> is not in the Glibc module: glibc's mallopt, and its M_MMAP_THRESHOLD (-3) and M_TRIM_THRESHOLD
        // (-1), by hand.
        typealias Mallopt = @convention(c) (CInt, CInt) -> CInt
        guard let symbol = dlsym(nil, "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        _ = mallopt(-3, 4 << 20)
        _ = mallopt(-1, 64 << 20)
        #endif
    }()

    /// TCP connections currently open (for metrics and leak checks).
    public var connectionCount: Int { self.state.withLock { $0.connections.count } }

    /// The ports bound so far (one per `bind` call).
    public var boundPorts: [Int] { self.state.withLock { $0.boundPorts } }

    /// What a portmapper should know about this server: every program, version and transport
    /// at `port` (default: the first bound port).
    public func registrations(port: Int? = nil) -> [RPCRegistration] {
        guard let port = port ?? self.boundPorts.first else { return [] }
        var result: [RPCRegistration] = []
        for program in self.programList {
            for version in program.versions {
                for transport in RPCTransport.allCases {
                    result.append(
                        RPCRegistration(program: program.program, version: version, transport: transport, port: port))
                }
            }
        }
        return result
    }

    /// Binds TCP and UDP on `host:port` and starts serving. With port 0 the system picks a TCP
    /// port and UDP binds the same number. May be called once per listen address.
    ///
    /// - Returns: the port bound.
    /// - Throws: `RPCServerError` naming host, port and transport (`.addressInUse` tells the
    ///   user what to change, from `configuration.portSettingHint`).
    public func bind(host: String, port: Int) async throws -> Int {
        // Binding waits on futures, which must not happen on an event loop or hold a thread of
        // the cooperative pool: the blocking form runs on NIO's shared pool.
        try await NIOThreadPool.singleton.runIfActive {
            try self.bindBlocking(host: host, port: port)
        }
    }

    /// `bind` with the sockets created on the calling thread (a thread that entered another
    /// network namespace, in tests). Blocks; not for use on an event loop.
    public func bindBlocking(host: String, port: Int) throws -> Int {
        let attempts = port == 0 ? 8 : 1
        var lastError: (any Error)? = nil
        for _ in 0..<attempts {
            let tcp = try self.mapBindError(host: host, port: port, transport: .tcp) {
                try self.makeTCPListener(host: host, port: port).wait()
            }
            let boundPort = tcp.localAddress?.port ?? port
            do {
                let udp = try self.mapBindError(host: host, port: boundPort, transport: .udp) {
                    try self.makeUDPSocket(host: host, port: boundPort).wait()
                }
                var perAddress: [any Channel] = []
                for address in Self.localAddresses(forWildcard: host) {
                    if let channel = try? self.makeUDPSocket(host: address, port: boundPort).wait() {
                        perAddress.append(channel)
                    }
                }
                return try self.adopt(tcp: tcp, udp: [udp] + perAddress, port: boundPort)
            } catch let error as RPCServerError where error.code == .addressInUse && port == 0 {
                lastError = error
                try? tcp.close().wait()
            } catch {
                try? tcp.close().wait()
                throw error
            }
        }
        throw lastError ?? RPCServerError(code: .bindFailed, host: host, port: port, transport: .udp)
    }

    /// A UDP reply leaves with the source address the kernel picks by routing, which on a
    /// multi-homed host may differ from the address the client sent to (NIO cannot set
    /// IP_PKTINFO on send), and a client with a connected UDP socket would discard it. So next
    /// to a wildcard UDP socket (which still catches addresses added later) we bind one socket
    /// per local address, with the same port: the kernel delivers each datagram to the most
    /// specific socket, whose replies then carry the right source.
    static func localAddresses(forWildcard host: String) -> [String] {
        let families: Set<NIOBSDSocket.ProtocolFamily>
        switch host {
        case "0.0.0.0": families = [.inet]
        case "::": families = [.inet, .inet6]
        default: return []
        }
        guard let devices = try? System.enumerateDevices() else { return [] }
        var result: [String] = []
        for device in devices {
            guard let address = device.address, families.contains(address.protocol), let ip = address.ipAddress else {
                continue
            }
            // Link-local IPv6 addresses need a scope; leave them to the wildcard socket.
            if ip.lowercased().hasPrefix("fe80") { continue }
            if !result.contains(ip) { result.append(ip) }
        }
        return result
    }

    private func adopt(tcp: any Channel, udp: [any Channel], port: Int) throws -> Int {
        let accepted = self.state.withLock { state -> Bool in
            guard !state.isShutDown else { return false }
            state.listeners.append(tcp)
            state.datagramChannels.append(contentsOf: udp)
            state.boundPorts.append(port)
            return true
        }
        guard accepted else {
            tcp.close(promise: nil)
            for channel in udp { channel.close(promise: nil) }
            throw RPCServerError(
                code: .shutDown, host: "\(tcp.localAddress.map { "\($0)" } ?? "?")", port: port, transport: .tcp)
        }
        self.logger.info(
            "RPC server listening",
            metadata: [
                "address": "\(tcp.localAddress.map { "\($0)" } ?? "?")",
                "programs": "\(self.programList.map { "\($0.program)" }.joined(separator: ","))",
            ]
        )
        return port
    }

    private func classify(_ error: any Error, host: String, port: Int, transport: RPCTransport) -> RPCServerError {
        if let error = error as? RPCServerError { return error }
        var code = RPCServerError.Code.bindFailed
        if let io = error as? IOError, io.errnoCode == EADDRINUSE {
            code = .addressInUse
        }
        return RPCServerError(
            code: code,
            host: host,
            port: port,
            transport: transport,
            hint: self.configuration.portSettingHint,
            underlying: error
        )
    }

    private func mapBindError<T>(
        host: String,
        port: Int,
        transport: RPCTransport,
        _ body: () throws -> T
    ) throws -> T {
        do {
            return try body()
        } catch {
            throw self.classify(error, host: host, port: port, transport: transport)
        }
    }

    private func makeTCPListener(host: String, port: Int) -> EventLoopFuture<any Channel> {
        let dispatcher = self.dispatcher
        let configuration = self.configuration
        let maxConnections = self.maxConnections
        let logger = self.logger
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: configuration.backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // Replies of up to a few MiB (NFS READ) fit; beyond the high mark we stop reading.
            .childChannelOption(
                .writeBufferWaterMark,
                value: ChannelOptions.Types.WriteBufferWaterMark(
                    low: max(1 << 20, configuration.maxQueuedReplyBytesPerConnection) / 2,
                    high: max(1 << 20, configuration.maxQueuedReplyBytesPerConnection)
                )
            )
            .childChannelInitializer { [weak self] channel in
                self?.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    // RPCTCPConnectionHandler cuts the stream into records and times idleness itself.
                    try channel.pipeline.syncOperations.addHandler(
                        RPCTCPConnectionHandler(
                            dispatcher: dispatcher,
                            configuration: configuration,
                            maxConnections: maxConnections,
                            logger: logger,
                            allocator: channel.allocator
                        )
                    )
                }
            }
            .bind(host: host, port: port)
    }

    private func makeUDPSocket(host: String, port: Int) -> EventLoopFuture<any Channel> {
        let dispatcher = self.dispatcher
        let configuration = self.configuration
        let logger = self.logger
        return DatagramBootstrap(group: self.group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // The destination address of each datagram: the call's local address when the
            // socket is bound to a wildcard address.
            .channelOption(.receivePacketInfo, value: true)
            .channelOption(
                .recvAllocator,
                value: FixedSizeRecvByteBufferAllocator(capacity: max(1024, configuration.maxDatagramBytes))
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        RPCUDPHandler(
                            dispatcher: dispatcher,
                            maxOutstanding: configuration.maxOutstandingUDP,
                            logger: logger
                        )
                    )
                }
            }
            .bind(host: host, port: port)
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let accepted = self.state.withLock { state -> Bool in
            guard !state.isShutDown else { return false }
            state.connections[id] = channel
            return true
        }
        guard accepted else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
        }
    }

    /// Stops listening and closes every connection. Calls running on the thread pool finish;
    /// their replies are discarded.
    public func shutdown() async throws {
        try await self.shutdown(gracePeriod: .seconds(5))
    }

    /// Stops serving, gracefully: no new connections are accepted and no new calls are read,
    /// but calls already executing finish and their replies are sent before each connection
    /// closes, up to `gracePeriod`; then whatever is left is closed.
    ///
    /// Why drain: a client whose non-idempotent call (REMOVE, RENAME) ran just before a
    /// restart but whose reply was never sent retransmits it to the new process, whose
    /// duplicate request cache is empty, and gets a spurious NFS3ERR_NOENT. A SIGKILL still
    /// loses such replies, as with any server that keeps its cache in memory.
    public func shutdown(gracePeriod: Duration) async throws {
        let (listeners, callCarriers) = self.state.withLock { state -> ([any Channel], [any Channel]) in
            state.isShutDown = true
            let listeners = state.listeners
            let carriers = state.datagramChannels + Array(state.connections.values)
            state.listeners = []
            state.datagramChannels = []
            state.connections = [:]
            return (listeners, carriers)
        }
        for channel in listeners {
            do {
                try await channel.close()
            } catch ChannelError.alreadyClosed {
                continue
            }
        }
        for channel in callCarriers {
            channel.pipeline.fireUserInboundEventTriggered(RPCDrainEvent())
        }
        let nanoseconds =
            gracePeriod.components.seconds * 1_000_000_000 + gracePeriod.components.attoseconds / 1_000_000_000
        let deadline = NIODeadline.now() + .nanoseconds(nanoseconds)
        for channel in callCarriers {
            // Force the close at the deadline if the drain has not closed the channel by then.
            let forced = channel.eventLoop.scheduleTask(deadline: deadline) {
                channel.close(promise: nil)
            }
            try? await channel.closeFuture.get()
            forced.cancel()
        }
    }
}

/// Tells a connection or UDP socket handler to stop reading calls, finish the ones executing,
/// send their replies and close.
struct RPCDrainEvent: Sendable {}
