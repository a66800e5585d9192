import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.4 (ACCESS).

/// ACCESS3args (RFC 1813 §3.3.4).
///
/// `access` is a bit mask of `Access3` values.
public struct Access3Args: Sendable, Hashable, XDRCodable {
    /// object
    public var object: FileHandle3
    /// access
    public var access: UInt32

    public init(object: FileHandle3, access: UInt32) {
        self.object = object
        self.access = access
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.object = try FileHandle3(xdr: &buffer)
        self.access = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.object.encode(xdr: &buffer)
        buffer.writeXDR(self.access)
    }
}

/// ACCESS3resok (RFC 1813 §3.3.4).
public struct Access3ResOK: Sendable, Hashable, XDRCodable {
    /// obj_attributes
    public var objAttributes: PostOpAttr
    /// access
    public var access: UInt32

    public init(objAttributes: PostOpAttr, access: UInt32) {
        self.objAttributes = objAttributes
        self.access = access
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.objAttributes = try PostOpAttr(xdr: &buffer)
        self.access = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.objAttributes.encode(xdr: &buffer)
        buffer.writeXDR(self.access)
    }
}

/// ACCESS3resfail (RFC 1813 §3.3.4).
public struct Access3ResFail: Sendable, Hashable, XDRCodable {
    /// obj_attributes
    public var objAttributes: PostOpAttr

    public init(objAttributes: PostOpAttr) {
        self.objAttributes = objAttributes
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.objAttributes = try PostOpAttr(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.objAttributes.encode(xdr: &buffer)
    }
}

/// ACCESS3res (RFC 1813 §3.3.4).
public typealias Access3Res = NFS3Result<Access3ResOK, Access3ResFail>
