import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.3 (LOOKUP).

/// LOOKUP3args (RFC 1813 §3.3.3).
public struct Lookup3Args: Sendable, Hashable, XDRCodable {
    public var what: DirOpArgs3

    public init(what: DirOpArgs3) { self.what = what }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.what = try DirOpArgs3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.what.encode(xdr: &buffer)
    }
}

/// LOOKUP3resok (RFC 1813 §3.3.3).
public struct Lookup3ResOK: Sendable, Hashable, XDRCodable {
    public var object: FileHandle3
    public var objAttributes: PostOpAttr
    public var dirAttributes: PostOpAttr

    public init(object: FileHandle3, objAttributes: PostOpAttr, dirAttributes: PostOpAttr) {
        self.object = object
        self.objAttributes = objAttributes
        self.dirAttributes = dirAttributes
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.object = try FileHandle3(xdr: &buffer)
        self.objAttributes = try PostOpAttr(xdr: &buffer)
        self.dirAttributes = try PostOpAttr(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.object.encode(xdr: &buffer)
        self.objAttributes.encode(xdr: &buffer)
        self.dirAttributes.encode(xdr: &buffer)
    }
}

/// LOOKUP3resfail (RFC 1813 §3.3.3).
public struct Lookup3ResFail: Sendable, Hashable, XDRCodable {
    public var dirAttributes: PostOpAttr

    public init(dirAttributes: PostOpAttr) { self.dirAttributes = dirAttributes }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.dirAttributes = try PostOpAttr(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.dirAttributes.encode(xdr: &buffer)
    }
}

/// LOOKUP3res (RFC 1813 §3.3.3).
public typealias Lookup3Res = NFS3Result<Lookup3ResOK, Lookup3ResFail>
