import NIOCore
import XDR

// Transcribed from RFC 1813 §2.5 (fattr3, post_op_attr, wcc_attr, pre_op_attr, wcc_data,
// post_op_fh3).

/// fattr3: the attributes of a file system object (RFC 1813 §2.5). 84 bytes on the wire.
public struct FileAttributes3: Sendable, Hashable, XDRCodable {
    /// The bytes a fattr3 occupies on the wire.
    public static let encodedSize = 84

    /// type: the type of the object.
    public var type: FileType3
    /// mode: the protection mode bits (the low 12 bits of a POSIX st_mode).
    public var mode: UInt32
    /// nlink: the number of hard links.
    public var nlink: UInt32
    /// uid: the owner's user id.
    public var uid: UInt32
    /// gid: the owner's group id.
    public var gid: UInt32
    /// size: the size in bytes.
    public var size: UInt64
    /// used: the bytes of disk space the object actually uses.
    public var used: UInt64
    /// rdev: the device numbers, for NF3CHR and NF3BLK.
    public var rdev: SpecData3
    /// fsid: the file system identifier.
    public var fsid: UInt64
    /// fileid: the number that uniquely identifies the object within its file system.
    public var fileid: UInt64
    /// atime: the time of last access.
    public var atime: NFSTime3
    /// mtime: the time of last modification of the data.
    public var mtime: NFSTime3
    /// ctime: the time of last change of the attributes.
    public var ctime: NFSTime3

    public init(
        type: FileType3, mode: UInt32, nlink: UInt32, uid: UInt32, gid: UInt32, size: UInt64, used: UInt64,
        rdev: SpecData3 = SpecData3(), fsid: UInt64, fileid: UInt64, atime: NFSTime3, mtime: NFSTime3,
        ctime: NFSTime3
    ) {
        self.type = type
        self.mode = mode
        self.nlink = nlink
        self.uid = uid
        self.gid = gid
        self.size = size
        self.used = used
        self.rdev = rdev
        self.fsid = fsid
        self.fileid = fileid
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.type = try FileType3(xdr: &buffer)
        self.mode = try buffer.readXDRUInt32()
        self.nlink = try buffer.readXDRUInt32()
        self.uid = try buffer.readXDRUInt32()
        self.gid = try buffer.readXDRUInt32()
        self.size = try buffer.readXDRUInt64()
        self.used = try buffer.readXDRUInt64()
        self.rdev = try SpecData3(xdr: &buffer)
        self.fsid = try buffer.readXDRUInt64()
        self.fileid = try buffer.readXDRUInt64()
        self.atime = try NFSTime3(xdr: &buffer)
        self.mtime = try NFSTime3(xdr: &buffer)
        self.ctime = try NFSTime3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.type.encode(xdr: &buffer)
        buffer.writeXDR(self.mode)
        buffer.writeXDR(self.nlink)
        buffer.writeXDR(self.uid)
        buffer.writeXDR(self.gid)
        buffer.writeXDR(self.size)
        buffer.writeXDR(self.used)
        self.rdev.encode(xdr: &buffer)
        buffer.writeXDR(self.fsid)
        buffer.writeXDR(self.fileid)
        self.atime.encode(xdr: &buffer)
        self.mtime.encode(xdr: &buffer)
        self.ctime.encode(xdr: &buffer)
    }

    /// The wcc_attr subset of these attributes (size, mtime, ctime).
    public var wccAttributes: WccAttr {
        WccAttr(size: self.size, mtime: self.mtime, ctime: self.ctime)
    }
}

/// post_op_attr: `union switch (bool attributes_follow) { case TRUE: fattr3 attributes; }`
/// (RFC 1813 §2.5).
public struct PostOpAttr: Sendable, Hashable, XDRCodable {
    /// The attributes, or `nil` when the server returns none.
    public var attributes: FileAttributes3?

    /// No attributes follow.
    public static let absent = PostOpAttr(nil)

    public init(_ attributes: FileAttributes3?) {
        self.attributes = attributes
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.attributes = try buffer.readXDROptional { (buffer: inout ByteBuffer) throws(XDRError) in
            try FileAttributes3(xdr: &buffer)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDROptional(self.attributes) { $1.encode(xdr: &$0) }
    }

    /// The bytes this post_op_attr occupies on the wire.
    public var encodedSize: Int { self.attributes == nil ? 4 : 4 + FileAttributes3.encodedSize }
}

/// wcc_attr: the subset of attributes used for weak cache consistency (RFC 1813 §2.6).
public struct WccAttr: Sendable, Hashable, XDRCodable {
    public var size: UInt64
    public var mtime: NFSTime3
    public var ctime: NFSTime3

    public init(size: UInt64, mtime: NFSTime3, ctime: NFSTime3) {
        self.size = size
        self.mtime = mtime
        self.ctime = ctime
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.size = try buffer.readXDRUInt64()
        self.mtime = try NFSTime3(xdr: &buffer)
        self.ctime = try NFSTime3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.size)
        self.mtime.encode(xdr: &buffer)
        self.ctime.encode(xdr: &buffer)
    }
}

/// pre_op_attr: `union switch (bool attributes_follow) { case TRUE: wcc_attr attributes; }`
/// (RFC 1813 §2.6).
public struct PreOpAttr: Sendable, Hashable, XDRCodable {
    public var attributes: WccAttr?

    /// No attributes follow.
    public static let absent = PreOpAttr(nil)

    public init(_ attributes: WccAttr?) {
        self.attributes = attributes
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.attributes = try buffer.readXDROptional { (buffer: inout ByteBuffer) throws(XDRError) in
            try WccAttr(xdr: &buffer)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDROptional(self.attributes) { $1.encode(xdr: &$0) }
    }
}

/// wcc_data: weak cache consistency data, the attributes before and after an operation
/// (RFC 1813 §2.6).
public struct WccData: Sendable, Hashable, XDRCodable {
    public var before: PreOpAttr
    public var after: PostOpAttr

    /// Neither before nor after attributes.
    public static let absent = WccData(before: .absent, after: .absent)

    public init(before: PreOpAttr, after: PostOpAttr) {
        self.before = before
        self.after = after
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.before = try PreOpAttr(xdr: &buffer)
        self.after = try PostOpAttr(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.before.encode(xdr: &buffer)
        self.after.encode(xdr: &buffer)
    }
}

/// post_op_fh3: `union switch (bool handle_follows) { case TRUE: nfs_fh3 handle; }`
/// (RFC 1813 §2.5).
public struct PostOpFileHandle3: Sendable, Hashable, XDRCodable {
    public var handle: FileHandle3?

    /// No handle follows.
    public static let absent = PostOpFileHandle3(nil)

    public init(_ handle: FileHandle3?) {
        self.handle = handle
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.handle = try buffer.readXDROptional { (buffer: inout ByteBuffer) throws(XDRError) in
            try FileHandle3(xdr: &buffer)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDROptional(self.handle) { $1.encode(xdr: &$0) }
    }

    /// The bytes this post_op_fh3 occupies on the wire.
    public var encodedSize: Int { 4 + (self.handle?.encodedSize ?? 0) }
}
