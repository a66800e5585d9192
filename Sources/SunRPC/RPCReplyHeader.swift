import NIOCore
import XDR

/// How a call was answered (RFC 5531 §9), as a client reads it from a reply.
public enum RPCReplyStatus: Sendable, Equatable, Hashable, CustomStringConvertible {
    case success
    case programUnavailable
    case programMismatch(low: UInt32, high: UInt32)
    case procedureUnavailable
    case garbageArguments
    case systemError
    case rpcMismatch(low: UInt32, high: UInt32)
    case authError(AuthStat)

    public var description: String {
        switch self {
        case .success: return "SUCCESS"
        case .programUnavailable: return "PROG_UNAVAIL (the server does not serve this program)"
        case .programMismatch(let low, let high): return "PROG_MISMATCH (versions \(low)...\(high) served)"
        case .procedureUnavailable: return "PROC_UNAVAIL"
        case .garbageArguments: return "GARBAGE_ARGS (the server could not decode the arguments)"
        case .systemError: return "SYSTEM_ERR"
        case .rpcMismatch(let low, let high): return "RPC_MISMATCH (RPC versions \(low)...\(high))"
        case .authError(let stat): return "AUTH_ERROR \(stat) (check the credential and the export's client rule)"
        }
    }
}

/// A reply message that is not one (RFC 5531 §9): what was wrong with it.
public struct RPCMalformedReply: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// The header of a reply message: its xid and how the call was answered. The clients of the
/// project (the blocking test client and the asynchronous NFS client) read replies through it.
public struct RPCReplyHeader: Sendable, Equatable {
    public var xid: UInt32
    public var status: RPCReplyStatus

    /// Reads the header from `buffer`; on `.success` the reader index is left at the results.
    public static func read(from buffer: inout ByteBuffer) throws(RPCMalformedReply) -> RPCReplyHeader {
        func malformed(_ what: String) -> RPCMalformedReply { RPCMalformedReply(description: what) }
        do {
            let xid = try buffer.readXDRUInt32()
            let messageType = try buffer.readXDRUInt32()
            guard messageType == RPCConstants.messageTypeReply else {
                throw malformed("msg_type \(messageType) where a REPLY (1) was expected")
            }
            switch try buffer.readXDRUInt32() {
            case ReplyStat.accepted.rawValue:
                _ = try buffer.readXDRUInt32()  // verifier flavor, then its body
                _ = try buffer.readXDRVariableOpaqueSlice(maxLength: RPCConstants.maxAuthBodyBytes)
                let status: RPCReplyStatus
                switch try buffer.readXDRUInt32() {
                case AcceptStat.success.rawValue: status = .success
                case AcceptStat.programUnavailable.rawValue: status = .programUnavailable
                case AcceptStat.programMismatch.rawValue:
                    status = .programMismatch(low: try buffer.readXDRUInt32(), high: try buffer.readXDRUInt32())
                case AcceptStat.procedureUnavailable.rawValue: status = .procedureUnavailable
                case AcceptStat.garbageArguments.rawValue: status = .garbageArguments
                case AcceptStat.systemError.rawValue: status = .systemError
                case let other: throw malformed("accept_stat \(other) is not defined by RFC 5531")
                }
                return RPCReplyHeader(xid: xid, status: status)
            case ReplyStat.denied.rawValue:
                let status: RPCReplyStatus
                switch try buffer.readXDRUInt32() {
                case RejectStat.rpcMismatch.rawValue:
                    status = .rpcMismatch(low: try buffer.readXDRUInt32(), high: try buffer.readXDRUInt32())
                case RejectStat.authError.rawValue:
                    let raw = try buffer.readXDRUInt32()
                    guard let stat = AuthStat(rawValue: raw) else {
                        throw malformed("auth_stat \(raw) is not defined by RFC 5531")
                    }
                    status = .authError(stat)
                case let other: throw malformed("reject_stat \(other) is not defined by RFC 5531")
                }
                return RPCReplyHeader(xid: xid, status: status)
            case let other:
                throw malformed("reply_stat \(other) is not defined by RFC 5531")
            }
        } catch let error as RPCMalformedReply {
            throw error
        } catch {
            throw malformed("reply header: \(error)")
        }
    }
}
