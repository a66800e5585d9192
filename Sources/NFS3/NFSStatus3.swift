import NIOCore
import XDR

// Transcribed from RFC 1813 §2.6 (Defined Error Numbers).

/// nfsstat3: the status of every NFS version 3 reply (RFC 1813 §2.6).
public enum NFSStatus3: UInt32, Sendable, Hashable, CaseIterable, XDRCodable {
    /// NFS3_OK: the call completed successfully.
    case ok = 0
    /// NFS3ERR_PERM: not owner; the caller is not privileged or not the owner.
    case perm = 1
    /// NFS3ERR_NOENT: no such file or directory.
    case noent = 2
    /// NFS3ERR_IO: a hard error (for example a disk error) occurred.
    case io = 5
    /// NFS3ERR_NXIO: no such device or address.
    case nxio = 6
    /// NFS3ERR_ACCES: permission denied (not the owner case of NFS3ERR_PERM).
    case acces = 13
    /// NFS3ERR_EXIST: the file specified already exists.
    case exist = 17
    /// NFS3ERR_XDEV: attempt to do a cross-device hard link.
    case xdev = 18
    /// NFS3ERR_NODEV: no such device.
    case nodev = 19
    /// NFS3ERR_NOTDIR: the caller specified a non-directory in a directory operation.
    case notdir = 20
    /// NFS3ERR_ISDIR: the caller specified a directory in a non-directory operation.
    case isdir = 21
    /// NFS3ERR_INVAL: invalid or unsupported argument for an operation.
    case inval = 22
    /// NFS3ERR_FBIG: the operation would make a file larger than the server allows.
    case fbig = 27
    /// NFS3ERR_NOSPC: no space left on device.
    case nospc = 28
    /// NFS3ERR_ROFS: a modifying operation was attempted on a read-only file system.
    case rofs = 30
    /// NFS3ERR_MLINK: too many hard links.
    case mlink = 31
    /// NFS3ERR_NAMETOOLONG: the filename in an operation was too long.
    case nametoolong = 63
    /// NFS3ERR_NOTEMPTY: an attempt was made to remove a directory that was not empty.
    case notempty = 66
    /// NFS3ERR_DQUOT: resource (quota) hard limit exceeded.
    case dquot = 69
    /// NFS3ERR_STALE: the file handle refers to an object that no longer exists.
    case stale = 70
    /// NFS3ERR_REMOTE: too many levels of remote in path.
    case remote = 71
    /// NFS3ERR_BADHANDLE: the file handle failed internal consistency checks.
    case badhandle = 10001
    /// NFS3ERR_NOT_SYNC: update synchronization mismatch during a SETATTR.
    case notSync = 10002
    /// NFS3ERR_BAD_COOKIE: the READDIR or READDIRPLUS cookie is stale.
    case badCookie = 10003
    /// NFS3ERR_NOTSUPP: the operation is not supported.
    case notsupp = 10004
    /// NFS3ERR_TOOSMALL: the buffer or request is too small.
    case toosmall = 10005
    /// NFS3ERR_SERVERFAULT: an error occurred on the server that maps to no legal status.
    case serverfault = 10006
    /// NFS3ERR_BADTYPE: an attempt was made to create an object of an unsupported type.
    case badtype = 10007
    /// NFS3ERR_JUKEBOX: the server started the request but could not complete it in time.
    case jukebox = 10008

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let raw = try buffer.readXDRUInt32()
        guard let value = NFSStatus3(rawValue: raw) else {
            throw XDRError.invalidEnum(type: "nfsstat3", value: raw)
        }
        self = value
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.rawValue)
    }
}
