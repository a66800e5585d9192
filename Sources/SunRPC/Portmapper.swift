import Logging
import NIOCore
import Synchronization
import XDR

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

/// A portmapper version 2 (RFC 1833 §3) served by our own `RPCServer` on port 111 when no
/// system rpcbind runs.
///
/// Pre-populated with itself (100000 v2 on TCP and UDP at `port`). SET and UNSET are accepted
/// only from loopback clients, as rpcbind does. CALLIT (indirect calls, an amplification
/// vector) answers PROC_UNAVAIL.
public final class BuiltinPortmapper: RPCProgramHandler {
    public let program = Portmapper.program
    public let versions: ClosedRange<UInt32> = 2...2
    public let port: Int
    private let table: Mutex<[RPCRegistration]>

    /// - Parameters:
    ///   - registrations: mappings to serve from the start (those of our NFS and MOUNT servers).
    ///   - port: the port this portmapper itself is reachable on (111 in production).
    public init(registrations: [RPCRegistration] = [], port: Int = Portmapper.port) {
        self.port = port
        var initial = [
            RPCRegistration(program: Portmapper.program, version: 2, transport: .tcp, port: port),
            RPCRegistration(program: Portmapper.program, version: 2, transport: .udp, port: port),
        ]
        for registration in registrations where !initial.contains(registration) {
            initial.append(registration)
        }
        self.table = Mutex(initial)
    }

    /// The current mappings.
    public var registrations: [RPCRegistration] { self.table.withLock { $0 } }

    /// Adds mappings (replacing any for the same program, version and transport).
    public func register(_ registrations: [RPCRegistration]) {
        self.table.withLock { table in
            for registration in registrations {
                table.removeAll {
                    $0.program == registration.program && $0.version == registration.version
                        && $0.transport == registration.transport
                }
                table.append(registration)
            }
        }
    }

    /// Removes mappings for the same program, version and transport (the port is ignored).
    public func unregister(_ registrations: [RPCRegistration]) {
        self.table.withLock { table in
            for registration in registrations {
                table.removeAll {
                    $0.program == registration.program && $0.version == registration.version
                        && $0.transport == registration.transport
                }
            }
        }
    }

    /// rpcbind's find_service_pmap: the exact version if mapped, else any version of the
    /// program on that transport (clients then learn the versions from PROG_MISMATCH).
    public func port(program: UInt32, version: UInt32, transport: RPCTransport) -> Int {
        self.table.withLock { table in
            var hit: RPCRegistration? = nil
            for registration in table where registration.program == program && registration.transport == transport {
                hit = registration
                if registration.version == version { break }
            }
            return hit?.port ?? 0
        }
    }

    public func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool { false }

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
                // RFC 1833: SET fails when the (prog, vers, prot) is already mapped.
                let added = self.table.withLock { table -> Bool in
                    if table.contains(where: {
                        $0.program == registration.program && $0.version == registration.version
                            && $0.transport == registration.transport
                    }) {
                        return false
                    }
                    table.append(registration)
                    return true
                }
                results.writeXDR(added)
            } else {
                // UNSET ignores prot and port: every transport of (prog, vers).
                let removed = self.table.withLock { table -> Bool in
                    let before = table.count
                    table.removeAll { $0.program == mapping.program && $0.version == mapping.version }
                    return table.count != before
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
}
