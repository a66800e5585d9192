import NIOCore
import XDR

// Transcribed from RFC 5531 (ONC RPC version 2), §8 and §9, and the AUTH_SYS body of §14.

/// Protocol constants of RFC 5531.
public enum RPCConstants {
    /// `rpcvers` of every call we accept (RFC 5531 §9).
    public static let rpcVersion: UInt32 = 2
    /// `msg_type`: CALL = 0, REPLY = 1.
    public static let messageTypeCall: UInt32 = 0
    public static let messageTypeReply: UInt32 = 1
    /// `opaque body<400>` of `opaque_auth` (RFC 5531 §8.2).
    public static let maxAuthBodyBytes = 400
    /// AUTH_SYS `machinename<255>` and `gids<16>` (RFC 5531 §14).
    public static let maxMachineNameBytes = 255
    public static let maxAuthSysGroups = 16
}

/// `auth_flavor` values we know (RFC 5531 §8.2, §14).
public enum AuthFlavor {
    public static let none: UInt32 = 0
    public static let sys: UInt32 = 1
    public static let short: UInt32 = 2
    public static let dh: UInt32 = 3
    public static let rpcsecGSS: UInt32 = 6
}

/// The transport a call arrived on.
public enum RPCTransport: String, Sendable, Hashable, CaseIterable {
    case tcp
    case udp
}

/// The body of an AUTH_SYS credential (`authsys_parms`, RFC 5531 §14).
public struct AuthSysParameters: Sendable, Equatable, Hashable {
    public var stamp: UInt32
    /// `machinename<255>`; decoded as UTF-8 with invalid sequences replaced.
    public var machineName: String
    public var uid: UInt32
    public var gid: UInt32
    /// `gids<16>`: supplementary groups.
    public var groups: [UInt32]

    public init(stamp: UInt32 = 0, machineName: String, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.stamp = stamp
        self.machineName = machineName
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }
}

extension AuthSysParameters: XDRCodable {
    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.stamp = try buffer.readXDRUInt32()
        self.machineName = try buffer.readXDRString(maxLength: RPCConstants.maxMachineNameBytes)
        self.uid = try buffer.readXDRUInt32()
        self.gid = try buffer.readXDRUInt32()
        self.groups = try buffer.readXDRArray(maxCount: RPCConstants.maxAuthSysGroups) { (source) throws(XDRError) in
            try source.readXDRUInt32()
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.stamp)
        buffer.writeXDRString(self.machineName)
        buffer.writeXDR(self.uid)
        buffer.writeXDR(self.gid)
        buffer.writeXDRArray(self.groups) { $0.writeXDR($1) }
    }
}

/// The credential of a call, with its body parsed where we understand the flavor.
public enum RPCCredential: Sendable, Equatable, Hashable {
    /// AUTH_NONE.
    case none
    /// AUTH_SYS (also called AUTH_UNIX).
    case sys(AuthSysParameters)
    /// Any other flavor (AUTH_SHORT, AUTH_DH, RPCSEC_GSS...). `RPCServer` answers such calls
    /// AUTH_ERROR / AUTH_BADCRED itself (RFC 5531 §9, as Linux's svc_authenticate): programs
    /// never see this case.
    case other(flavor: UInt32)

    public var flavor: UInt32 {
        switch self {
        case .none: return AuthFlavor.none
        case .sys: return AuthFlavor.sys
        case .other(let flavor): return flavor
        }
    }

    /// Writes this credential as an `opaque_auth` (flavor + body). `.other` is written with an
    /// empty body.
    public func encode(xdr buffer: inout ByteBuffer) {
        switch self {
        case .none:
            buffer.writeXDR(AuthFlavor.none)
            buffer.writeXDR(UInt32(0))
        case .sys(let parameters):
            buffer.writeXDR(AuthFlavor.sys)
            var body = ByteBuffer()
            parameters.encode(xdr: &body)
            buffer.writeXDRVariableOpaque(buffer: body)
        case .other(let flavor):
            buffer.writeXDR(flavor)
            buffer.writeXDR(UInt32(0))
        }
    }
}

/// `auth_stat` (RFC 5531 §9): why a call was rejected with AUTH_ERROR.
public enum AuthStat: UInt32, Sendable, Equatable, Hashable {
    case ok = 0
    /// AUTH_BADCRED: bad credential (seal broken).
    case badCredential = 1
    /// AUTH_REJECTEDCRED: client must begin new session.
    case rejectedCredential = 2
    /// AUTH_BADVERF: bad verifier (seal broken).
    case badVerifier = 3
    /// AUTH_REJECTEDVERF: verifier expired or replayed.
    case rejectedVerifier = 4
    /// AUTH_TOOWEAK: rejected for security reasons.
    case tooWeak = 5
    /// AUTH_INVALIDRESP: bogus response verifier.
    case invalidResponse = 6
    /// AUTH_FAILED: reason unknown.
    case failed = 7
}

/// `accept_stat` (RFC 5531 §9).
package enum AcceptStat: UInt32 {
    case success = 0
    case programUnavailable = 1
    case programMismatch = 2
    case procedureUnavailable = 3
    case garbageArguments = 4
    case systemError = 5
}

/// `reject_stat` (RFC 5531 §9).
package enum RejectStat: UInt32 {
    case rpcMismatch = 0
    case authError = 1
}

/// `reply_stat` (RFC 5531 §9).
package enum ReplyStat: UInt32 {
    case accepted = 0
    case denied = 1
}

/// The header of a call message (`call_body`, RFC 5531 §9), up to the procedure arguments.
struct RPCCallHeader: Sendable, Equatable {
    var xid: UInt32
    var program: UInt32
    var version: UInt32
    var procedure: UInt32
    var credential: RPCCredential
}

/// What the header of an incoming message says, as far as the server is concerned.
enum RPCCallParseResult: Sendable, Equatable {
    /// A well-formed call; the buffer's reader index is at the procedure arguments.
    case call(RPCCallHeader)
    /// A call we must answer with an error without dispatching it (RPC_MISMATCH, AUTH_ERROR).
    case reject(xid: UInt32, RPCReplyBody)
    /// Not a call we can answer at all (a reply, or garbage): close the TCP connection / drop
    /// the datagram.
    case unparseable(String)
}

/// Every reply the server can send, without xid (RFC 5531 §9 `reply_body`): the same outcomes a
/// client reads back from a reply header, so one type serves both directions.
typealias RPCReplyBody = RPCReplyStatus

package enum RPCMessageCodec {
    /// Parses the header of a call. Never traps; see `RPCCallParseResult`.
    static func parseCall(_ buffer: inout ByteBuffer) -> RPCCallParseResult {
        guard let xid = try? buffer.readXDRUInt32() else {
            return .unparseable("message shorter than an xid")
        }
        guard let messageType = try? buffer.readXDRUInt32() else {
            return .unparseable("message has no msg_type")
        }
        guard messageType == RPCConstants.messageTypeCall else {
            return .unparseable("msg_type \(messageType) is not CALL")
        }
        guard let rpcVersion = try? buffer.readXDRUInt32() else {
            return .unparseable("call has no rpcvers")
        }
        // RFC 5531 §9: RPC_MISMATCH carries the lowest and highest version we support.
        guard rpcVersion == RPCConstants.rpcVersion else {
            return .reject(xid: xid, .rpcMismatch(low: RPCConstants.rpcVersion, high: RPCConstants.rpcVersion))
        }
        guard let program = try? buffer.readXDRUInt32(),
            let version = try? buffer.readXDRUInt32(),
            let procedure = try? buffer.readXDRUInt32()
        else {
            return .unparseable("call header truncated before the procedure")
        }
        // Credential: a broken opaque_auth is a bad credential, not garbage: the header up to
        // here was sound, so the client deserves an answer.
        guard let credentialFlavor = try? buffer.readXDRUInt32(),
            var credentialBody = try? buffer.readXDRVariableOpaqueSlice(maxLength: RPCConstants.maxAuthBodyBytes)
        else {
            return .reject(xid: xid, .authError(.badCredential))
        }
        guard (try? buffer.readXDRUInt32()) != nil,
            (try? buffer.readXDRVariableOpaqueSlice(maxLength: RPCConstants.maxAuthBodyBytes)) != nil
        else {
            return .reject(xid: xid, .authError(.badVerifier))
        }
        let credential: RPCCredential
        switch credentialFlavor {
        case AuthFlavor.none:
            credential = .none
        case AuthFlavor.sys:
            guard let parameters = try? AuthSysParameters(xdr: &credentialBody),
                credentialBody.readableBytes == 0
            else {
                return .reject(xid: xid, .authError(.badCredential))
            }
            credential = .sys(parameters)
        default:
            credential = .other(flavor: credentialFlavor)
        }
        return .call(
            RPCCallHeader(xid: xid, program: program, version: version, procedure: procedure, credential: credential)
        )
    }

    /// The bytes `writeReplyHeader` writes for `body`.
    static func replyHeaderByteCount(_ body: RPCReplyBody) -> Int {
        switch body {
        // xid, REPLY, MSG_ACCEPTED, verifier (flavor, empty body), accept_stat
        case .success, .programUnavailable, .procedureUnavailable, .garbageArguments, .systemError: return 24
        case .programMismatch: return 32
        // xid, REPLY, MSG_DENIED, RPC_MISMATCH, low, high
        case .rpcMismatch: return 24
        // xid, REPLY, MSG_DENIED, AUTH_ERROR, auth_stat
        case .authError: return 20
        }
    }

    /// Writes the reply header (xid through accept_stat/reject body) for `body`. For `.success`
    /// the encoded results follow.
    static func writeReplyHeader(xid: UInt32, body: RPCReplyBody, into buffer: inout ByteBuffer) {
        buffer.writeXDR(xid)
        buffer.writeXDR(RPCConstants.messageTypeReply)
        func accepted(_ stat: AcceptStat, _ buffer: inout ByteBuffer) {
            buffer.writeXDR(ReplyStat.accepted.rawValue)
            // verf: AUTH_NONE, empty body.
            buffer.writeXDR(AuthFlavor.none)
            buffer.writeXDR(UInt32(0))
            buffer.writeXDR(stat.rawValue)
        }
        switch body {
        case .success:
            accepted(.success, &buffer)
        case .programUnavailable:
            accepted(.programUnavailable, &buffer)
        case .programMismatch(let low, let high):
            accepted(.programMismatch, &buffer)
            buffer.writeXDR(low)
            buffer.writeXDR(high)
        case .procedureUnavailable:
            accepted(.procedureUnavailable, &buffer)
        case .garbageArguments:
            accepted(.garbageArguments, &buffer)
        case .systemError:
            accepted(.systemError, &buffer)
        case .rpcMismatch(let low, let high):
            buffer.writeXDR(ReplyStat.denied.rawValue)
            buffer.writeXDR(RejectStat.rpcMismatch.rawValue)
            buffer.writeXDR(low)
            buffer.writeXDR(high)
        case .authError(let stat):
            buffer.writeXDR(ReplyStat.denied.rawValue)
            buffer.writeXDR(RejectStat.authError.rawValue)
            buffer.writeXDR(stat.rawValue)
        }
    }

    /// Writes a call message header (for the client).
    package static func writeCallHeader(
        xid: UInt32,
        program: UInt32,
        version: UInt32,
        procedure: UInt32,
        credential: RPCCredential,
        rpcVersion: UInt32 = RPCConstants.rpcVersion,
        into buffer: inout ByteBuffer
    ) {
        buffer.writeXDR(xid)
        buffer.writeXDR(RPCConstants.messageTypeCall)
        buffer.writeXDR(rpcVersion)
        buffer.writeXDR(program)
        buffer.writeXDR(version)
        buffer.writeXDR(procedure)
        credential.encode(xdr: &buffer)
        buffer.writeXDR(AuthFlavor.none)
        buffer.writeXDR(UInt32(0))
    }
}
