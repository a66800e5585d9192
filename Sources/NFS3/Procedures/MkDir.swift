import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.9 (MKDIR).

/// MKDIR3args (RFC 1813 §3.3.9).
public struct MkDir3Args: Sendable, Hashable, XDRCodable {
    /// where
    public var `where`: DirOpArgs3
    /// attributes
    public var attributes: SetAttributes3

    public init(`where`: DirOpArgs3, attributes: SetAttributes3) {
        self.where = `where`
        self.attributes = attributes
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.where = try DirOpArgs3(xdr: &buffer)
        self.attributes = try SetAttributes3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.where.encode(xdr: &buffer)
        self.attributes.encode(xdr: &buffer)
    }
}

/// MKDIR3resok (RFC 1813 §3.3.9): the same shape as CREATE3resok.
public typealias MkDir3ResOK = Create3ResOK
/// MKDIR3resfail (RFC 1813 §3.3.9).
public typealias MkDir3ResFail = Create3ResFail
/// MKDIR3res (RFC 1813 §3.3.9).
public typealias MkDir3Res = NFS3Result<MkDir3ResOK, MkDir3ResFail>
