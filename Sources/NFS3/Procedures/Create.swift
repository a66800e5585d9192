import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.8 (CREATE).

/// createmode3 (RFC 1813 §3.3.8).
public enum CreateMode3: UInt32, Sendable, Hashable, CaseIterable {
    /// UNCHECKED: create, or use the existing file (applying the attributes).
    case unchecked = 0
    /// GUARDED: create, or fail with NFS3ERR_EXIST.
    case guarded = 1
    /// EXCLUSIVE: create with a verifier so a retransmission succeeds.
    case exclusive = 2
}

/// createhow3: `union switch (createmode3 mode) { case UNCHECKED: case GUARDED: sattr3
/// obj_attributes; case EXCLUSIVE: createverf3 verf; }` (RFC 1813 §3.3.8).
public enum CreateHow3: Sendable, Hashable, XDRCodable {
    case unchecked(SetAttributes3)
    case guarded(SetAttributes3)
    case exclusive(CreateVerifier3)

    /// The discriminant.
    public var mode: CreateMode3 {
        switch self {
        case .unchecked: return .unchecked
        case .guarded: return .guarded
        case .exclusive: return .exclusive
        }
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let raw = try buffer.readXDRUInt32()
        switch CreateMode3(rawValue: raw) {
        case .unchecked: self = .unchecked(try SetAttributes3(xdr: &buffer))
        case .guarded: self = .guarded(try SetAttributes3(xdr: &buffer))
        case .exclusive: self = .exclusive(try CreateVerifier3(xdr: &buffer))
        case nil: throw XDRError.invalidEnum(type: "createmode3", value: raw)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.mode.rawValue)
        switch self {
        case .unchecked(let attributes), .guarded(let attributes):
            attributes.encode(xdr: &buffer)
        case .exclusive(let verifier):
            verifier.encode(xdr: &buffer)
        }
    }
}

/// CREATE3args (RFC 1813 §3.3.8).
public struct Create3Args: Sendable, Hashable, XDRCodable {
    /// where
    public var `where`: DirOpArgs3
    /// how
    public var how: CreateHow3

    public init(`where`: DirOpArgs3, how: CreateHow3) {
        self.where = `where`
        self.how = how
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.where = try DirOpArgs3(xdr: &buffer)
        self.how = try CreateHow3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.where.encode(xdr: &buffer)
        self.how.encode(xdr: &buffer)
    }
}

/// CREATE3resok (RFC 1813 §3.3.8).
public struct Create3ResOK: Sendable, Hashable, XDRCodable {
    /// obj
    public var obj: PostOpFileHandle3
    /// obj_attributes
    public var objAttributes: PostOpAttr
    /// dir_wcc
    public var dirWcc: WccData

    public init(obj: PostOpFileHandle3, objAttributes: PostOpAttr, dirWcc: WccData) {
        self.obj = obj
        self.objAttributes = objAttributes
        self.dirWcc = dirWcc
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.obj = try PostOpFileHandle3(xdr: &buffer)
        self.objAttributes = try PostOpAttr(xdr: &buffer)
        self.dirWcc = try WccData(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.obj.encode(xdr: &buffer)
        self.objAttributes.encode(xdr: &buffer)
        self.dirWcc.encode(xdr: &buffer)
    }
}

/// CREATE3resfail (RFC 1813 §3.3.8).
public struct Create3ResFail: Sendable, Hashable, XDRCodable {
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

/// CREATE3res (RFC 1813 §3.3.8).
public typealias Create3Res = NFS3Result<Create3ResOK, Create3ResFail>
