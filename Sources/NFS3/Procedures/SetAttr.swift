import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.2 (SETATTR).

/// SETATTR3args (RFC 1813 §3.3.2). `guardCtime` is sattrguard3: when present the server
/// applies the change only if the object's ctime equals it, else NFS3ERR_NOT_SYNC.
public struct SetAttr3Args: Sendable, Hashable, XDRCodable {
    public var object: FileHandle3
    public var newAttributes: SetAttributes3
    /// sattrguard3: `union switch (bool check) { case TRUE: nfstime3 obj_ctime; }`.
    public var guardCtime: NFSTime3?

    public init(object: FileHandle3, newAttributes: SetAttributes3, guardCtime: NFSTime3? = nil) {
        self.object = object
        self.newAttributes = newAttributes
        self.guardCtime = guardCtime
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.object = try FileHandle3(xdr: &buffer)
        self.newAttributes = try SetAttributes3(xdr: &buffer)
        self.guardCtime = try buffer.readXDROptional { (buffer: inout ByteBuffer) throws(XDRError) in
            try NFSTime3(xdr: &buffer)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.object.encode(xdr: &buffer)
        self.newAttributes.encode(xdr: &buffer)
        buffer.writeXDROptional(self.guardCtime) { $1.encode(xdr: &$0) }
    }
}

/// SETATTR3resok and SETATTR3resfail (RFC 1813 §3.3.2): both are the object's wcc_data.
public struct SetAttr3ResBody: Sendable, Hashable, XDRCodable {
    public var objWcc: WccData

    public init(objWcc: WccData) { self.objWcc = objWcc }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.objWcc = try WccData(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.objWcc.encode(xdr: &buffer)
    }
}

/// SETATTR3resok (RFC 1813 §3.3.2).
public typealias SetAttr3ResOK = SetAttr3ResBody
/// SETATTR3resfail (RFC 1813 §3.3.2).
public typealias SetAttr3ResFail = SetAttr3ResBody
/// SETATTR3res (RFC 1813 §3.3.2).
public typealias SetAttr3Res = NFS3Result<SetAttr3ResOK, SetAttr3ResFail>
