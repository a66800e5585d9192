import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.19 (FSINFO).

/// FSINFO3args (RFC 1813 §3.3.19).
public struct FSInfo3Args: Sendable, Hashable, XDRCodable {
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

/// FSINFO3resok (RFC 1813 §3.3.19).
///
/// `properties` is a bit mask of `FSInfoProperties3` values.
public struct FSInfo3ResOK: Sendable, Hashable, XDRCodable {
    /// obj_attributes
    public var objAttributes: PostOpAttr
    /// rtmax
    public var rtmax: UInt32
    /// rtpref
    public var rtpref: UInt32
    /// rtmult
    public var rtmult: UInt32
    /// wtmax
    public var wtmax: UInt32
    /// wtpref
    public var wtpref: UInt32
    /// wtmult
    public var wtmult: UInt32
    /// dtpref
    public var dtpref: UInt32
    /// maxfilesize
    public var maxfilesize: UInt64
    /// time_delta
    public var timeDelta: NFSTime3
    /// properties
    public var properties: UInt32

    public init(
        objAttributes: PostOpAttr,
        rtmax: UInt32,
        rtpref: UInt32,
        rtmult: UInt32,
        wtmax: UInt32,
        wtpref: UInt32,
        wtmult: UInt32,
        dtpref: UInt32,
        maxfilesize: UInt64,
        timeDelta: NFSTime3,
        properties: UInt32
    ) {
        self.objAttributes = objAttributes
        self.rtmax = rtmax
        self.rtpref = rtpref
        self.rtmult = rtmult
        self.wtmax = wtmax
        self.wtpref = wtpref
        self.wtmult = wtmult
        self.dtpref = dtpref
        self.maxfilesize = maxfilesize
        self.timeDelta = timeDelta
        self.properties = properties
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.objAttributes = try PostOpAttr(xdr: &buffer)
        self.rtmax = try buffer.readXDRUInt32()
        self.rtpref = try buffer.readXDRUInt32()
        self.rtmult = try buffer.readXDRUInt32()
        self.wtmax = try buffer.readXDRUInt32()
        self.wtpref = try buffer.readXDRUInt32()
        self.wtmult = try buffer.readXDRUInt32()
        self.dtpref = try buffer.readXDRUInt32()
        self.maxfilesize = try buffer.readXDRUInt64()
        self.timeDelta = try NFSTime3(xdr: &buffer)
        self.properties = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.objAttributes.encode(xdr: &buffer)
        buffer.writeXDR(self.rtmax)
        buffer.writeXDR(self.rtpref)
        buffer.writeXDR(self.rtmult)
        buffer.writeXDR(self.wtmax)
        buffer.writeXDR(self.wtpref)
        buffer.writeXDR(self.wtmult)
        buffer.writeXDR(self.dtpref)
        buffer.writeXDR(self.maxfilesize)
        self.timeDelta.encode(xdr: &buffer)
        buffer.writeXDR(self.properties)
    }
}

/// FSINFO3resfail (RFC 1813 §3.3.19).
public struct FSInfo3ResFail: Sendable, Hashable, XDRCodable {
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

/// FSINFO3res (RFC 1813 §3.3.19).
public typealias FSInfo3Res = NFS3Result<FSInfo3ResOK, FSInfo3ResFail>
