import Logging
import NIOCore
import SunRPC

#if canImport(Glibc)
import Glibc
#endif

// Asking port 111 who is there takes an RPC client; the server links this at start-up only.

extension SystemRPCBind {
    /// True when something answers a portmapper NULL call on 127.0.0.1:111 within `timeout`.
    public static func isRunning(
        timeout: Duration = .seconds(1), host: String = "127.0.0.1", port: Int = Portmapper.port
    ) -> Bool {
        for transport in [RPCTransport.tcp, .udp] {
            guard
                let client = try? RPCClient(
                    host: host,
                    port: port,
                    transport: transport,
                    timeout: timeout,
                    udpRetransmitInterval: timeout / 4
                )
            else { continue }
            defer { client.close() }
            if let reply = try? client.call(program: Portmapper.program, version: Portmapper.version, procedure: 0),
                reply.status == .success
            {
                return true
            }
        }
        return false
    }
}

/// Decides what `PortmapperMode.auto` means on this machine.
///
/// `auto` → `system` if an rpcbind answers on 127.0.0.1:111; else `builtin` if port 111 can be
/// bound on TCP and UDP; else `off`, logging which mount options clients must pass.
/// Explicit modes are returned unchanged.
///
/// - Parameters:
///   - nfsPort, mountPort: named in the log line for `off`.
public func resolvePortmapperMode(
    _ requested: PortmapperMode,
    portmapperPort: Int = Portmapper.port,
    bindHost: String = "0.0.0.0",
    probeTimeout: Duration = .seconds(1),
    nfsPort: Int? = nil,
    mountPort: Int? = nil,
    logger: Logger
) -> PortmapperMode {
    guard requested == .auto else { return requested }
    if SystemRPCBind.isRunning(timeout: probeTimeout, port: portmapperPort) {
        logger.info("portmapper: system rpcbind answers; registering with it", metadata: ["mode": "system"])
        return .system
    }
    if canBind(host: bindHost, port: portmapperPort) {
        logger.info("portmapper: no rpcbind running; serving portmapper v2 ourselves", metadata: ["mode": "builtin"])
        return .builtin
    }
    var options: [String] = []
    options.append(nfsPort.map { "port=\($0)" } ?? "port=<nfs port>")
    options.append(mountPort.map { "mountport=\($0)" } ?? "mountport=<mount port>")
    options.append("mountproto=tcp")
    logger.warning(
        "portmapper: no rpcbind answers on port \(portmapperPort) and the port cannot be bound; clients must be given the ports: mount -o \(options.joined(separator: ",")) (or start rpcbind, or run with the privilege to bind port \(portmapperPort))",
        metadata: ["mode": "off"]
    )
    return .off
}

/// True when both a TCP and a UDP socket can bind `host:port` right now.
func canBind(host: String, port: Int) -> Bool {
    guard let address = try? SocketAddress(ipAddress: host, port: port) else { return false }
    for type in [Int32(SOCK_STREAM.rawValue), Int32(SOCK_DGRAM.rawValue)] {
        let fd = socket(address.protocol.rawValue, type, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
        if rc != 0 { return false }
    }
    return true
}
