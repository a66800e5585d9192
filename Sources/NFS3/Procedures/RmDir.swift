import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.13 (RMDIR).

/// RMDIR3args (RFC 1813 §3.3.13).
public struct RmDir3Args: Sendable, Hashable, XDRCodable {
    /// object
    public var object: DirOpArgs3

    public init(object: DirOpArgs3) {
        self.object = object
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.object = try DirOpArgs3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.object.encode(xdr: &buffer)
    }
}

/// RMDIR3resok (RFC 1813 §3.3.13): the directory's wcc_data, as REMOVE3resok.
public typealias RmDir3ResOK = Remove3ResBody
/// RMDIR3resfail (RFC 1813 §3.3.13).
public typealias RmDir3ResFail = Remove3ResBody
/// RMDIR3res (RFC 1813 §3.3.13).
public typealias RmDir3Res = NFS3Result<RmDir3ResOK, RmDir3ResFail>
