import NFS3
import SunRPC

/// Every failure of the client, typed so that callers can tell an NFS answer (a status the
/// server chose) from a transport failure.
public enum NFS3ClientError: Error, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The NFS server answered `procedure` with a status other than NFS3_OK.
    case nfs(NFSStatus3, procedure: NFS3Procedure)
    /// The MOUNT server refused MNT of `path`.
    case mount(MountStatus3, path: String)
    /// The RPC layer refused the call (never `.success`).
    case rpc(RPCReplyStatus)
    /// The portmapper has no port for the program and version.
    case notRegistered(program: UInt32, version: UInt32)
    /// The TCP connection could not be made.
    case connectFailed(String)
    /// The connection closed with the call in flight (or before it was sent).
    case connectionClosed
    /// No reply within the connection's timeout.
    case timedOut
    /// The reply could not be decoded.
    case malformedReply(String)
    /// Any other error of the socket layer.
    case transport(String)

    /// The NFS status, when the server answered with one.
    public var nfsStatus: NFSStatus3? {
        if case .nfs(let status, _) = self { return status }
        return nil
    }

    public var description: String {
        switch self {
        case .nfs(let status, let procedure): return "\(procedure.name): \(status)"
        case .mount(let status, let path):
            return "MNT \(path): \(status) (is the path exported to this client address?)"
        case .rpc(let refusal): return "RPC: \(refusal)"
        case .notRegistered(let program, let version):
            return "the portmapper has no TCP port for program \(program) version \(version) (give the port explicitly)"
        case .connectFailed(let detail): return "connect: \(detail)"
        case .connectionClosed: return "the connection closed with the call in flight"
        case .timedOut: return "no reply within the timeout"
        case .malformedReply(let detail): return "malformed reply: \(detail)"
        case .transport(let detail): return "transport: \(detail)"
        }
    }
}
