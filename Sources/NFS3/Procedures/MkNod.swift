import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.11 (MKNOD).

/// devicedata3 (RFC 1813 §3.3.11).
public struct DeviceData3: Sendable, Hashable, XDRCodable {
    /// dev_attributes
    public var devAttributes: SetAttributes3
    /// spec
    public var spec: SpecData3

    public init(devAttributes: SetAttributes3, spec: SpecData3) {
        self.devAttributes = devAttributes
        self.spec = spec
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.devAttributes = try SetAttributes3(xdr: &buffer)
        self.spec = try SpecData3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.devAttributes.encode(xdr: &buffer)
        self.spec.encode(xdr: &buffer)
    }
}

/// mknoddata3: `union switch (ftype3 type) { case NF3CHR: case NF3BLK: devicedata3 device;
/// case NF3SOCK: case NF3FIFO: sattr3 pipe_attributes; default: void; }` (RFC 1813 §3.3.11).
///
/// Every other type value, including ones ftype3 does not define, decodes as
/// `.otherType` with a void body, so that the server answers NFS3ERR_BADTYPE (as Linux knfsd
/// does) rather than GARBAGE_ARGS.
public enum MkNodData3: Sendable, Hashable, XDRCodable {
    case chr(DeviceData3)
    case blk(DeviceData3)
    case sock(SetAttributes3)
    case fifo(SetAttributes3)
    /// NF3REG, NF3DIR, NF3LNK or an undefined value: no body.
    case otherType(UInt32)

    /// The raw ftype3 discriminant.
    public var typeValue: UInt32 {
        switch self {
        case .chr: return FileType3.chr.rawValue
        case .blk: return FileType3.blk.rawValue
        case .sock: return FileType3.sock.rawValue
        case .fifo: return FileType3.fifo.rawValue
        case .otherType(let raw): return raw
        }
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let raw = try buffer.readXDRUInt32()
        switch FileType3(rawValue: raw) {
        case .chr: self = .chr(try DeviceData3(xdr: &buffer))
        case .blk: self = .blk(try DeviceData3(xdr: &buffer))
        case .sock: self = .sock(try SetAttributes3(xdr: &buffer))
        case .fifo: self = .fifo(try SetAttributes3(xdr: &buffer))
        case .reg, .dir, .lnk, nil: self = .otherType(raw)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.typeValue)
        switch self {
        case .chr(let device), .blk(let device):
            device.encode(xdr: &buffer)
        case .sock(let attributes), .fifo(let attributes):
            attributes.encode(xdr: &buffer)
        case .otherType:
            break
        }
    }
}

/// MKNOD3args (RFC 1813 §3.3.11).
public struct MkNod3Args: Sendable, Hashable, XDRCodable {
    /// where
    public var `where`: DirOpArgs3
    /// what
    public var what: MkNodData3

    public init(`where`: DirOpArgs3, what: MkNodData3) {
        self.where = `where`
        self.what = what
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.where = try DirOpArgs3(xdr: &buffer)
        self.what = try MkNodData3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.where.encode(xdr: &buffer)
        self.what.encode(xdr: &buffer)
    }
}

/// MKNOD3resok (RFC 1813 §3.3.11): the same shape as CREATE3resok.
public typealias MkNod3ResOK = Create3ResOK
/// MKNOD3resfail (RFC 1813 §3.3.11).
public typealias MkNod3ResFail = Create3ResFail
/// MKNOD3res (RFC 1813 §3.3.11).
public typealias MkNod3Res = NFS3Result<MkNod3ResOK, MkNod3ResFail>
