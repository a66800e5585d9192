import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.14 (RENAME).

/// RENAME3args (RFC 1813 §3.3.14).
public struct Rename3Args: Sendable, Hashable, XDRCodable {
    /// from
    public var from: DirOpArgs3
    /// to
    public var to: DirOpArgs3

    public init(from: DirOpArgs3, to: DirOpArgs3) {
        self.from = from
        self.to = to
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.from = try DirOpArgs3(xdr: &buffer)
        self.to = try DirOpArgs3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.from.encode(xdr: &buffer)
        self.to.encode(xdr: &buffer)
    }
}

/// RENAME3resok and RENAME3resfail (RFC 1813 §3.3.14).
public struct Rename3ResBody: Sendable, Hashable, XDRCodable {
    /// fromdir_wcc
    public var fromdirWcc: WccData
    /// todir_wcc
    public var todirWcc: WccData

    public init(fromdirWcc: WccData, todirWcc: WccData) {
        self.fromdirWcc = fromdirWcc
        self.todirWcc = todirWcc
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fromdirWcc = try WccData(xdr: &buffer)
        self.todirWcc = try WccData(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fromdirWcc.encode(xdr: &buffer)
        self.todirWcc.encode(xdr: &buffer)
    }
}

/// RENAME3resok (RFC 1813 §3.3.14).
public typealias Rename3ResOK = Rename3ResBody
/// RENAME3resfail (RFC 1813 §3.3.14).
public typealias Rename3ResFail = Rename3ResBody
/// RENAME3res (RFC 1813 §3.3.14).
public typealias Rename3Res = NFS3Result<Rename3ResOK, Rename3ResFail>
