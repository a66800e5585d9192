import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.1 (GETATTR).

/// GETATTR3args (RFC 1813 §3.3.1).
public struct GetAttr3Args: Sendable, Hashable, XDRCodable {
    public var object: FileHandle3

    public init(object: FileHandle3) { self.object = object }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.object = try FileHandle3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.object.encode(xdr: &buffer)
    }
}

/// GETATTR3resok (RFC 1813 §3.3.1).
public struct GetAttr3ResOK: Sendable, Hashable, XDRCodable {
    public var objAttributes: FileAttributes3

    public init(objAttributes: FileAttributes3) { self.objAttributes = objAttributes }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.objAttributes = try FileAttributes3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.objAttributes.encode(xdr: &buffer)
    }
}

/// GETATTR3res (RFC 1813 §3.3.1): the failure arm is void.
public typealias GetAttr3Res = NFS3Result<GetAttr3ResOK, NFS3Void>
