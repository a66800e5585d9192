import Logging
import NIOCore
import Synchronization
import XDR

#if canImport(Glibc)
import Glibc
#endif

// Transcribed from RFC 1833 §3: the portmapper protocol, program 100000 version 2.

/// How the server makes itself known to clients that ask port 111.
public enum PortmapperMode: String, Sendable, CaseIterable {
    /// `system` if an rpcbind answers on 127.0.0.1:111, else `builtin` if port 111 can be
    /// bound, else `off`.
    case auto
    /// Register with the system's rpcbind (libtirpc), unregister on shutdown.
    case system
    /// Serve portmapper v2 on port 111 ourselves.
    case builtin
    /// No portmapper: clients must be told the ports (mount options port=, mountport=).
    case off
}

/// One portmapper mapping: program, version, transport → port.
public struct RPCRegistration: Sendable, Hashable, CustomStringConvertible {
    public var program: UInt32
    public var version: UInt32
    public var transport: RPCTransport
    public var port: Int

    public init(program: UInt32, version: UInt32, transport: RPCTransport, port: Int) {
        self.program = program
        self.version = version
        self.transport = transport
        self.port = port
    }

    public var description: String { "\(self.program) v\(self.version) \(self.transport.rawValue) port \(self.port)" }
}

/// Portmapper constants (RFC 1833 §3).
public enum Portmapper {
    public static let program: UInt32 = 100000
    public static let version: UInt32 = 2
    public static let port = 111
    /// `IPPROTO_TCP` and `IPPROTO_UDP` as used in `mapping.prot`.
    public static let protocolTCP: UInt32 = 6
    public static let protocolUDP: UInt32 = 17

    public enum Procedure: UInt32, Sendable {
        case null = 0
        case set = 1
        case unset = 2
        case getport = 3
        case dump = 4
        case callit = 5
    }

    static func protocolNumber(_ transport: RPCTransport) -> UInt32 {
        transport == .tcp ? Self.protocolTCP : Self.protocolUDP
    }

    static func transport(protocolNumber: UInt32) -> RPCTransport? {
        switch protocolNumber {
        case Self.protocolTCP: return .tcp
        case Self.protocolUDP: return .udp
        default: return nil
        }
    }
}

/// `struct mapping` (RFC 1833 §3).
public struct PortmapperMapping: Sendable, Equatable, XDRCodable {
    public var program: UInt32
    public var version: UInt32
    public var protocolNumber: UInt32
    public var port: UInt32

    public init(program: UInt32, version: UInt32, protocolNumber: UInt32, port: UInt32) {
        self.program = program
        self.version = version
        self.protocolNumber = protocolNumber
        self.port = port
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.program = try buffer.readXDRUInt32()
        self.version = try buffer.readXDRUInt32()
        self.protocolNumber = try buffer.readXDRUInt32()
        self.port = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.program)
        buffer.writeXDR(self.version)
        buffer.writeXDR(self.protocolNumber)
        buffer.writeXDR(self.port)
    }

    /// Decodes a `pmaplist` (the DUMP result): a linked list written as "more follows" bools.
    public static func decodeList(_ buffer: inout ByteBuffer, maxEntries: Int = 4096) throws(XDRError) -> [Self] {
        var result: [Self] = []
        while try buffer.readXDRBool() {
            guard result.count < maxEntries else {
                throw XDRError.lengthTooLarge(length: UInt32(truncatingIfNeeded: result.count + 1), limit: maxEntries)
            }
            result.append(try Self(xdr: &buffer))
        }
        return result
    }
}

/// Who made a portmapper mapping, and so who may remove it (rpcbind keeps an owner per mapping
/// the same way, `r_owner`).
public enum PortmapperOwner: Sendable, Hashable, CustomStringConvertible {
    /// This server's own mappings (NFS, MOUNT, the portmapper itself): no caller may unset or
    /// replace them, root included; only `unregister` removes them.
    case server
    /// Root: a loopback caller whose socket belongs to uid 0, or that calls from a privileged
    /// source port (below 1024, which only root can bind). May remove any mapping but the
    /// server's.
    case superuser
    /// A local unprivileged user, known by the uid owning its socket.
    case user(uid: UInt32)
    /// A loopback caller whose socket could not be attributed to a user: may add mappings,
    /// which only root can remove.
    case unknown

    public var description: String {
        switch self {
        case .server: return "strata"
        case .superuser: return "superuser"
        case .user(let uid): return "uid \(uid)"
        case .unknown: return "unknown"
        }
    }

    /// Whether this caller may remove (or replace) a mapping owned by `owner`.
    func mayRemove(mappingOf owner: PortmapperOwner) -> Bool {
        switch (self, owner) {
        case (_, .server): return false
        case (.superuser, _): return true
        case (.user(let mine), .user(let theirs)): return mine == theirs
        default: return false
        }
    }
}

/// A portmapper version 2 (RFC 1833 §3) served by our own `RPCServer` on port 111 when no
/// system rpcbind runs.
///
/// Pre-populated with itself (100000 v2 on TCP and UDP at `port`). SET and UNSET are accepted
/// only from loopback clients, as rpcbind does, and each mapping remembers its owner
/// (`PortmapperOwner`): only that owner or root may unset it, and the server's own mappings
/// (those passed to `init` or `register`) cannot be unset or replaced by any caller, so a local
/// user cannot point NFS or MOUNT at a port of its own. CALLIT (indirect calls, an
/// amplification vector) answers PROC_UNAVAIL.
///
/// The caller's owner is found as Linux lets one check it over TCP/UDP loopback: the uid
/// owning the caller's socket, read from `/proc/net/{tcp,udp}{,6}` (the entry whose local
/// address is the caller's address and port); a privileged source port counts as root.
public final class BuiltinPortmapper: RPCProgramHandler {
    public let program = Portmapper.program
    public let versions: ClosedRange<UInt32> = 2...2
    public let port: Int
    private let table: Mutex<[(registration: RPCRegistration, owner: PortmapperOwner)]>
    private let identify: @Sendable (RPCCallContext) -> PortmapperOwner

    /// - Parameters:
    ///   - registrations: mappings to serve from the start (those of our NFS and MOUNT servers),
    ///     owned by the server.
    ///   - port: the port this portmapper itself is reachable on (111 in production).
    ///   - identifyCaller: who a loopback caller is (default: `callerOwner(of:)`); for tests.
    public init(
        registrations: [RPCRegistration] = [],
        port: Int = Portmapper.port,
        identifyCaller: (@Sendable (RPCCallContext) -> PortmapperOwner)? = nil
    ) {
        self.port = port
        var initial = [
            RPCRegistration(program: Portmapper.program, version: 2, transport: .tcp, port: port),
            RPCRegistration(program: Portmapper.program, version: 2, transport: .udp, port: port),
        ]
        for registration in registrations where !initial.contains(registration) {
            initial.append(registration)
        }
        self.table = Mutex(initial.map { ($0, PortmapperOwner.server) })
        self.identify = identifyCaller ?? { Self.callerOwner(of: $0) }
    }

    /// The current mappings.
    public var registrations: [RPCRegistration] { self.table.withLock { $0.map(\.registration) } }

    /// The owner of the mapping for program, version and transport, if any.
    public func owner(program: UInt32, version: UInt32, transport: RPCTransport) -> PortmapperOwner? {
        self.table.withLock { table in
            table.first {
                $0.registration.program == program && $0.registration.version == version
                    && $0.registration.transport == transport
            }?.owner
        }
    }

    /// Adds mappings owned by the server (replacing any for the same program, version and
    /// transport, whoever owned them).
    public func register(_ registrations: [RPCRegistration]) {
        self.table.withLock { table in
            for registration in registrations {
                table.removeAll {
                    $0.registration.program == registration.program && $0.registration.version == registration.version
                        && $0.registration.transport == registration.transport
                }
                table.append((registration, .server))
            }
        }
    }

    /// Removes mappings for the same program, version and transport (the port is ignored).
    public func unregister(_ registrations: [RPCRegistration]) {
        self.table.withLock { table in
            for registration in registrations {
                table.removeAll {
                    $0.registration.program == registration.program && $0.registration.version == registration.version
                        && $0.registration.transport == registration.transport
                }
            }
        }
    }

    /// rpcbind's find_service_pmap: the exact version if mapped, else any version of the
    /// program on that transport (clients then learn the versions from PROG_MISMATCH).
    public func port(program: UInt32, version: UInt32, transport: RPCTransport) -> Int {
        self.table.withLock { table in
            var hit: RPCRegistration? = nil
            for entry in table where entry.registration.program == program && entry.registration.transport == transport
            {
                hit = entry.registration
                if entry.registration.version == version { break }
            }
            return hit?.port ?? 0
        }
    }

    public func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool { false }

    /// The table is in memory: all but SET and UNSET (which read /proc) run on the event loop.
    public func isNonBlocking(version: UInt32, procedure: UInt32) -> Bool {
        procedure != Portmapper.Procedure.set.rawValue && procedure != Portmapper.Procedure.unset.rawValue
    }

    public func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        guard let procedure = Portmapper.Procedure(rawValue: call.procedure) else {
            return .procedureUnavailable
        }
        var results = ByteBuffer()
        switch procedure {
        case .null:
            return .success(results)

        case .set, .unset:
            guard let mapping = try? PortmapperMapping(xdr: &arguments) else { return .garbageArguments }
            // Only local processes may change the table (rpcbind's check_access for SET/UNSET).
            guard Self.isLoopback(call.remoteAddress) else {
                call.logger.info("refusing portmapper \(procedure) from a remote client")
                results.writeXDR(false)
                return .success(results)
            }
            let caller = self.identify(call)
            if procedure == .set {
                guard let transport = Portmapper.transport(protocolNumber: mapping.protocolNumber),
                    mapping.port > 0, mapping.port <= 65535
                else {
                    results.writeXDR(false)
                    return .success(results)
                }
                let registration = RPCRegistration(
                    program: mapping.program,
                    version: mapping.version,
                    transport: transport,
                    port: Int(mapping.port)
                )
                // RFC 1833: SET fails when the (prog, vers, prot) is already mapped (to replace
                // a mapping, its owner or root unsets it first).
                let added = self.table.withLock { table -> Bool in
                    if table.contains(where: {
                        $0.registration.program == registration.program
                            && $0.registration.version == registration.version
                            && $0.registration.transport == registration.transport
                    }) {
                        return false
                    }
                    table.append((registration, caller == .server ? .unknown : caller))
                    return true
                }
                results.writeXDR(added)
            } else {
                // UNSET ignores prot and port: every transport of (prog, vers). As rpcbind, it
                // fails when one of them belongs to someone the caller may not remove.
                let (removed, refusedOwner) = self.table.withLock { table -> (Bool, PortmapperOwner?) in
                    let matching = table.filter {
                        $0.registration.program == mapping.program && $0.registration.version == mapping.version
                    }
                    if let foreign = matching.first(where: { !caller.mayRemove(mappingOf: $0.owner) }) {
                        return (false, foreign.owner)
                    }
                    table.removeAll {
                        $0.registration.program == mapping.program && $0.registration.version == mapping.version
                    }
                    return (!matching.isEmpty, nil)
                }
                if let refusedOwner {
                    call.logger.notice(
                        "refusing portmapper UNSET of a mapping owned by someone else",
                        metadata: [
                            "program": "\(mapping.program)", "version": "\(mapping.version)",
                            "caller": "\(caller)", "owner": "\(refusedOwner)",
                        ]
                    )
                }
                results.writeXDR(removed)
            }
            return .success(results)

        case .getport:
            guard let mapping = try? PortmapperMapping(xdr: &arguments) else { return .garbageArguments }
            guard let transport = Portmapper.transport(protocolNumber: mapping.protocolNumber) else {
                results.writeXDR(UInt32(0))
                return .success(results)
            }
            let port = self.port(program: mapping.program, version: mapping.version, transport: transport)
            results.writeXDR(UInt32(truncatingIfNeeded: port))
            return .success(results)

        case .dump:
            for registration in self.registrations {
                results.writeXDR(true)
                PortmapperMapping(
                    program: registration.program,
                    version: registration.version,
                    protocolNumber: Portmapper.protocolNumber(registration.transport),
                    port: UInt32(truncatingIfNeeded: registration.port)
                ).encode(xdr: &results)
            }
            results.writeXDR(false)
            return .success(results)

        case .callit:
            return .procedureUnavailable
        }
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        guard let ip = address.ipAddress else { return true }  // unix domain socket: local
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    /// Who a loopback caller is: root for a privileged source port, else the uid owning its
    /// socket as Linux lists it in /proc/net (`unknown` when not found).
    public static func callerOwner(of call: RPCCallContext) -> PortmapperOwner {
        guard let port = call.remoteAddress.port, let ip = call.remoteAddress.ipAddress else { return .unknown }
        if port < 1024 { return .superuser }
        let server =
            call.transport == .tcp
            ? call.localAddress.flatMap { address in
                address.ipAddress.flatMap { ip in address.port.map { (ip, $0) } }
            } : nil
        guard let uid = Self.socketOwner(ip: ip, port: port, transport: call.transport, peer: server) else {
            return .unknown
        }
        return uid == 0 ? .superuser : .user(uid: uid)
    }

    /// The uid owning the local socket bound to `ip:port`, from /proc/net/{tcp,udp}{,6}. An
    /// unconnected UDP socket may be bound to the wildcard address: that matches too.
    static func socketOwner(
        ip: String, port: Int, transport: RPCTransport, peer: (ip: String, port: Int)? = nil
    ) -> UInt32? {
        let mappedV4 = ip.hasPrefix("::ffff:") ? String(ip.dropFirst(7)) : nil
        let v4 = ip.contains(":") ? mappedV4 : ip
        var v4Addresses: [String] = []
        var v6Addresses: [String] = []
        if let v4, let hex = Self.procNetIPv4(v4) {
            v4Addresses.append(hex)
            if let mapped = Self.procNetIPv6("::ffff:\(v4)") { v6Addresses.append(mapped) }
        } else if let hex = Self.procNetIPv6(ip) {
            v6Addresses.append(hex)
        }
        if transport == .udp {
            v4Addresses.append(String(repeating: "0", count: 8))
            v6Addresses.append(String(repeating: "0", count: 32))
        }
        // Over TCP the caller's socket is connected to ours: its remote field is our address.
        var peers: Set<String>? = nil
        if let peer {
            let peerPort = Self.hex(UInt64(peer.port), digits: 4)
            let mapped = peer.ip.hasPrefix("::ffff:") ? String(peer.ip.dropFirst(7)) : nil
            var candidates: [String] = []
            if let v4 = peer.ip.contains(":") ? mapped : peer.ip, let hex = Self.procNetIPv4(v4) {
                candidates.append(hex)
                if let hex6 = Self.procNetIPv6("::ffff:\(v4)") { candidates.append(hex6) }
            } else if let hex6 = Self.procNetIPv6(peer.ip) {
                candidates.append(hex6)
            }
            peers = Set(candidates.map { "\($0):\(peerPort)" })
        }
        let base = transport == .tcp ? "/proc/net/tcp" : "/proc/net/udp"
        let portHex = Self.hex(UInt64(port), digits: 4)
        for (path, addresses) in [(base, v4Addresses), (base + "6", v6Addresses)] where !addresses.isEmpty {
            guard let text = Self.readSmallFile(path) else { continue }
            let wanted = Set(addresses.map { "\($0):\(portHex)" })
            for line in text.split(separator: "\n").dropFirst() {
                // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 7, wanted.contains(fields[1].uppercased()) else { continue }
                // Over TCP only an established connection (state 01) is the caller's: a
                // listener (0A) is not, and a TIME_WAIT leftover of an earlier connection on the
                // same port (06) is listed with uid 0.
                if transport == .tcp, fields[3] != "01" { continue }
                if let peers, !peers.contains(fields[2].uppercased()) { continue }
                if let uid = UInt32(fields[7]) { return uid }
            }
        }
        return nil
    }

    /// "127.0.0.1" as /proc/net/tcp writes it: the address in host byte order, hex ("0100007F").
    static func procNetIPv4(_ dotted: String) -> String? {
        let parts = dotted.split(separator: ".").compactMap { UInt8($0) }
        guard parts.count == 4 else { return nil }
        return parts.reversed().map { Self.hex(UInt64($0), digits: 2) }.joined()
    }

    /// An IPv6 address as /proc/net/tcp6 writes it: four 32-bit words, each in host byte order.
    static func procNetIPv6(_ text: String) -> String? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &address) { Array($0) }
        var out = ""
        for word in 0..<4 {
            for byte in bytes[(word * 4)..<(word * 4 + 4)].reversed() {
                out += Self.hex(UInt64(byte), digits: 2)
            }
        }
        return out
    }

    static func hex(_ value: UInt64, digits: Int) -> String {
        let text = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    /// A /proc file's text (at most 16 MiB), nil when it cannot be read.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < 16 << 20 {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
