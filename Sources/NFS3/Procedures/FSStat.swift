import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.18 (FSSTAT).

/// FSSTAT3args (RFC 1813 §3.3.18).
public struct FSStat3Args: Sendable, Hashable, XDRCodable {
    /// fsroot
    public var fsroot: FileHandle3

    public init(fsroot: FileHandle3) {
        self.fsroot = fsroot
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fsroot = try FileHandle3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fsroot.encode(xdr: &buffer)
    }
}

/// FSSTAT3resok (RFC 1813 §3.3.18).
public struct FSStat3ResOK: Sendable, Hashable, XDRCodable {
    /// obj_attributes
    public var objAttributes: PostOpAttr
    /// tbytes
    public var tbytes: UInt64
    /// fbytes
    public var fbytes: UInt64
    /// abytes
    public var abytes: UInt64
    /// tfiles
    public var tfiles: UInt64
    /// ffiles
    public var ffiles: UInt64
    /// afiles
    public var afiles: UInt64
    /// invarsec
    public var invarsec: UInt32

    public init(
        objAttributes: PostOpAttr,
        tbytes: UInt64,
        fbytes: UInt64,
        abytes: UInt64,
        tfiles: UInt64,
        ffiles: UInt64,
        afiles: UInt64,
        invarsec: UInt32
    ) {
        self.objAttributes = objAttributes
        self.tbytes = tbytes
        self.fbytes = fbytes
        self.abytes = abytes
        self.tfiles = tfiles
        self.ffiles = ffiles
        self.afiles = afiles
        self.invarsec = invarsec
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.objAttributes = try PostOpAttr(xdr: &buffer)
        self.tbytes = try buffer.readXDRUInt64()
        self.fbytes = try buffer.readXDRUInt64()
        self.abytes = try buffer.readXDRUInt64()
        self.tfiles = try buffer.readXDRUInt64()
        self.ffiles = try buffer.readXDRUInt64()
        self.afiles = try buffer.readXDRUInt64()
        self.invarsec = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.objAttributes.encode(xdr: &buffer)
        buffer.writeXDR(self.tbytes)
        buffer.writeXDR(self.fbytes)
        buffer.writeXDR(self.abytes)
        buffer.writeXDR(self.tfiles)
        buffer.writeXDR(self.ffiles)
        buffer.writeXDR(self.afiles)
        buffer.writeXDR(self.invarsec)
    }
}

/// FSSTAT3resfail (RFC 1813 §3.3.18).
public struct FSStat3ResFail: Sendable, Hashable, XDRCodable {
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

/// FSSTAT3res (RFC 1813 §3.3.18).
public typealias FSStat3Res = NFS3Result<FSStat3ResOK, FSStat3ResFail>
