import CTIRPC
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Why registering with the system's rpcbind failed.
public struct SystemRPCBindError: Error, Sendable, CustomStringConvertible {
    public var registration: RPCRegistration
    public var netid: String
    public var message: String

    public var description: String {
        "cannot register \(self.registration) (netid \(self.netid)) with the system rpcbind: \(self.message); "
            + "is rpcbind running? (or set [server] portmapper = \"builtin\" or \"off\")"
    }
}

/// The system's rpcbind (or portmapper), reached through libtirpc.
///
/// `register` and `unregister` block (libtirpc talks to rpcbind over its local socket or
/// loopback); call them from a thread that may block, never from an event loop.
public enum SystemRPCBind {
    /// True when something answers a portmapper NULL call on 127.0.0.1:111 within `timeout`.
    public static func isRunning(timeout: Duration = .seconds(1), host: String = "127.0.0.1", port: Int = Portmapper.port) -> Bool {
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

    /// Registers every mapping with rpcbind (replacing a stale mapping of the same program,
    /// version and transport, as rpc.mountd does), for IPv4 and, with `includeIPv6`, IPv6.
    ///
    /// - Throws: `SystemRPCBindError` naming the mapping that failed; mappings registered
    ///   before it stay registered (call `unregister` to clean up).
    public static func register(_ registrations: [RPCRegistration], includeIPv6: Bool = false) throws {
        for registration in registrations {
            for netid in self.netids(registration.transport, includeIPv6: includeIPv6) {
                try self.set(registration, netid: netid)
            }
        }
    }

    /// Removes the mappings of every program, version and transport in `registrations`
    /// (ports are ignored). Never throws: shutdown goes on whatever rpcbind says.
    public static func unregister(_ registrations: [RPCRegistration], includeIPv6: Bool = true) {
        var seen = Set<String>()
        for registration in registrations {
            for netid in self.netids(registration.transport, includeIPv6: includeIPv6) {
                guard seen.insert("\(registration.program)/\(registration.version)/\(netid)").inserted else { continue }
                guard let netconfig = getnetconfigent(netid) else { continue }
                defer { freenetconfigent(netconfig) }
                _ = rpcb_unset(registration.program, registration.version, netconfig)
            }
        }
    }

    static func netids(_ transport: RPCTransport, includeIPv6: Bool) -> [String] {
        switch transport {
        case .tcp: return includeIPv6 ? ["tcp", "tcp6"] : ["tcp"]
        case .udp: return includeIPv6 ? ["udp", "udp6"] : ["udp"]
        }
    }

    private static func set(_ registration: RPCRegistration, netid: String) throws {
        guard registration.port > 0, registration.port <= 65535 else {
            throw SystemRPCBindError(registration: registration, netid: netid, message: "port out of range")
        }
        guard let netconfig = getnetconfigent(netid) else {
            throw SystemRPCBindError(
                registration: registration,
                netid: netid,
                message: "getnetconfigent(\"\(netid)\") failed (missing /etc/netconfig?)"
            )
        }
        defer { freenetconfigent(netconfig) }
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: netid.hasSuffix("6") ? "::" : "0.0.0.0", port: registration.port)
        } catch {
            throw SystemRPCBindError(registration: registration, netid: netid, message: "\(error)")
        }
        // A stale mapping (a previous run that was killed) would make rpcb_set fail.
        _ = rpcb_unset(registration.program, registration.version, netconfig)
        let ok = address.withSockAddr { pointer, length -> Bool in
            var netbuf = netbuf(
                maxlen: UInt32(length),
                len: UInt32(length),
                buf: UnsafeMutableRawPointer(mutating: pointer)
            )
            return rpcb_set(registration.program, registration.version, netconfig, &netbuf) != 0
        }
        guard ok else {
            throw SystemRPCBindError(registration: registration, netid: netid, message: "rpcb_set refused or failed")
        }
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
