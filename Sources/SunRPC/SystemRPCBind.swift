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
