import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.12 (REMOVE).

/// REMOVE3args (RFC 1813 §3.3.12).
public struct Remove3Args: Sendable, Hashable, XDRCodable {
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

/// REMOVE3resok and REMOVE3resfail (RFC 1813 §3.3.12).
public struct Remove3ResBody: Sendable, Hashable, XDRCodable {
    /// dir_wcc
    public var dirWcc: WccData

    public init(dirWcc: WccData) {
        self.dirWcc = dirWcc
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.dirWcc = try WccData(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.dirWcc.encode(xdr: &buffer)
    }
}

/// REMOVE3resok (RFC 1813 §3.3.12).
public typealias Remove3ResOK = Remove3ResBody
/// REMOVE3resfail (RFC 1813 §3.3.12).
public typealias Remove3ResFail = Remove3ResBody
/// REMOVE3res (RFC 1813 §3.3.12).
public typealias Remove3Res = NFS3Result<Remove3ResOK, Remove3ResFail>
