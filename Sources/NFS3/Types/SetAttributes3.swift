import NIOCore
import XDR

// Transcribed from RFC 1813 §2.5: time_how, set_mode3, set_uid3, set_gid3, set_size3,
// set_atime, set_mtime, sattr3.

/// time_how: how SETATTR sets a time (RFC 1813 §2.5).
public enum TimeHow3: UInt32, Sendable, Hashable, CaseIterable {
    /// DONT_CHANGE
    case dontChange = 0
    /// SET_TO_SERVER_TIME
    case setToServerTime = 1
    /// SET_TO_CLIENT_TIME
    case setToClientTime = 2
}

/// set_atime / set_mtime: `union switch (time_how set_it) { case SET_TO_CLIENT_TIME: nfstime3
/// time; default: void; }` (RFC 1813 §2.5).
public enum SetTime3: Sendable, Hashable, XDRCodable {
    /// DONT_CHANGE: leave the time as it is.
    case dontChange
    /// SET_TO_SERVER_TIME: set the time to the server's current time.
    case setToServerTime
    /// SET_TO_CLIENT_TIME: set the time to the given value.
    case setToClientTime(NFSTime3)

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let raw = try buffer.readXDRUInt32()
        switch TimeHow3(rawValue: raw) {
        case .dontChange: self = .dontChange
        case .setToServerTime: self = .setToServerTime
        case .setToClientTime: self = .setToClientTime(try NFSTime3(xdr: &buffer))
        case nil: throw XDRError.invalidEnum(type: "time_how", value: raw)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        switch self {
        case .dontChange:
            buffer.writeXDR(TimeHow3.dontChange.rawValue)
        case .setToServerTime:
            buffer.writeXDR(TimeHow3.setToServerTime.rawValue)
        case .setToClientTime(let time):
            buffer.writeXDR(TimeHow3.setToClientTime.rawValue)
            time.encode(xdr: &buffer)
        }
    }
}

/// sattr3: the attributes a client may set (RFC 1813 §2.5). `nil` stands for
/// `set_it = FALSE` in set_mode3, set_uid3, set_gid3 and set_size3.
public struct SetAttributes3: Sendable, Hashable, XDRCodable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: SetTime3
    public var mtime: SetTime3

    /// Changes nothing.
    public static let none = SetAttributes3()

    public init(
        mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
        atime: SetTime3 = .dontChange, mtime: SetTime3 = .dontChange
    ) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.mode = try buffer.readXDROptional { (buffer: inout ByteBuffer) throws(XDRError) in
            try buffer.readXDRUInt32()
        }
        self.uid = try buffer.readXDROptional { (buffer: inout ByteBuffer) throws(XDRError) in
            try buffer.readXDRUInt32()
        }
        self.gid = try buffer.readXDROptional { (buffer: inout ByteBuffer) throws(XDRError) in
            try buffer.readXDRUInt32()
        }
        self.size = try buffer.readXDROptional { (buffer: inout ByteBuffer) throws(XDRError) in
            try buffer.readXDRUInt64()
        }
        self.atime = try SetTime3(xdr: &buffer)
        self.mtime = try SetTime3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDROptional(self.mode) { $0.writeXDR($1) }
        buffer.writeXDROptional(self.uid) { $0.writeXDR($1) }
        buffer.writeXDROptional(self.gid) { $0.writeXDR($1) }
        buffer.writeXDROptional(self.size) { $0.writeXDR($1) }
        self.atime.encode(xdr: &buffer)
        self.mtime.encode(xdr: &buffer)
    }
}

/// diropargs3: a directory and a name in it (RFC 1813 §2.5). The name is bytes and is not
/// checked against NAME_MAX here: the server answers NFS3ERR_NAMETOOLONG.
public struct DirOpArgs3: Sendable, Hashable, XDRCodable {
    public var dir: FileHandle3
    public var name: [UInt8]

    public init(dir: FileHandle3, name: [UInt8]) {
        self.dir = dir
        self.name = name
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.dir = try FileHandle3(xdr: &buffer)
        self.name = try buffer.readNFSFilename()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.dir.encode(xdr: &buffer)
        buffer.writeXDRVariableOpaque(self.name)
    }
}
