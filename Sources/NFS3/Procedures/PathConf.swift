import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.20 (PATHCONF).

/// PATHCONF3args (RFC 1813 §3.3.20).
public struct PathConf3Args: Sendable, Hashable, XDRCodable {
    /// object
    public var object: FileHandle3

    public init(object: FileHandle3) {
        self.object = object
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.object = try FileHandle3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.object.encode(xdr: &buffer)
    }
}

/// PATHCONF3resok (RFC 1813 §3.3.20).
public struct PathConf3ResOK: Sendable, Hashable, XDRCodable {
    /// obj_attributes
    public var objAttributes: PostOpAttr
    /// linkmax
    public var linkmax: UInt32
    /// name_max
    public var nameMax: UInt32
    /// no_trunc
    public var noTrunc: Bool
    /// chown_restricted
    public var chownRestricted: Bool
    /// case_insensitive
    public var caseInsensitive: Bool
    /// case_preserving
    public var casePreserving: Bool

    public init(
        objAttributes: PostOpAttr,
        linkmax: UInt32,
        nameMax: UInt32,
        noTrunc: Bool,
        chownRestricted: Bool,
        caseInsensitive: Bool,
        casePreserving: Bool
    ) {
        self.objAttributes = objAttributes
        self.linkmax = linkmax
        self.nameMax = nameMax
        self.noTrunc = noTrunc
        self.chownRestricted = chownRestricted
        self.caseInsensitive = caseInsensitive
        self.casePreserving = casePreserving
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.objAttributes = try PostOpAttr(xdr: &buffer)
        self.linkmax = try buffer.readXDRUInt32()
        self.nameMax = try buffer.readXDRUInt32()
        self.noTrunc = try buffer.readXDRBool()
        self.chownRestricted = try buffer.readXDRBool()
        self.caseInsensitive = try buffer.readXDRBool()
        self.casePreserving = try buffer.readXDRBool()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.objAttributes.encode(xdr: &buffer)
        buffer.writeXDR(self.linkmax)
        buffer.writeXDR(self.nameMax)
        buffer.writeXDR(self.noTrunc)
        buffer.writeXDR(self.chownRestricted)
        buffer.writeXDR(self.caseInsensitive)
        buffer.writeXDR(self.casePreserving)
    }
}

/// PATHCONF3resfail (RFC 1813 §3.3.20).
public struct PathConf3ResFail: Sendable, Hashable, XDRCodable {
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

/// PATHCONF3res (RFC 1813 §3.3.20).
public typealias PathConf3Res = NFS3Result<PathConf3ResOK, PathConf3ResFail>
