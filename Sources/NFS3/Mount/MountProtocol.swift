import NIOCore
import XDR

// Transcribed from RFC 1813 Appendix I (Mount protocol version 3) and RFC 1094 Appendix A
// (Mount protocol version 1).

/// Constants of the MOUNT protocol (RFC 1813 Appendix I §5.1, RFC 1094 Appendix A).
public enum Mount {
    /// The ONC RPC program number of MOUNT.
    public static let program: UInt32 = 100_005
    /// MOUNT version 1 (RFC 1094), used with NFS version 2 and by some tools.
    public static let version1: UInt32 = 1
    /// MOUNT version 3 (RFC 1813), used with NFS version 3.
    public static let version3: UInt32 = 3

    /// MNTPATHLEN: the maximum bytes in a path name (dirpath).
    public static let maxPathBytes = 1024
    /// MNTNAMLEN: the maximum bytes in a name (host or group).
    public static let maxNameBytes = 255
    /// FHSIZE3: the maximum bytes in a version 3 file handle (fhandle3).
    public static let fileHandle3MaxBytes = 64
    /// FHSIZE: the size in bytes of a version 1 file handle (fhandle, RFC 1094 §2.3.3).
    public static let fileHandle1Bytes = 32
}

/// The procedures of MOUNT versions 1 and 3, which share numbers and meanings
/// (RFC 1813 §5.2, RFC 1094 §A.5).
public enum MountProcedure: UInt32, Sendable, Hashable, CaseIterable {
    /// MOUNTPROC3_NULL: do nothing.
    case null = 0
    /// MOUNTPROC3_MNT: add a mount entry and return the file handle of an exported directory.
    case mnt = 1
    /// MOUNTPROC3_DUMP: return the mount entries.
    case dump = 2
    /// MOUNTPROC3_UMNT: remove a mount entry.
    case umnt = 3
    /// MOUNTPROC3_UMNTALL: remove all of the caller's mount entries.
    case umntall = 4
    /// MOUNTPROC3_EXPORT: return the export list.
    case export = 5

    /// The RFC name of the procedure, for logs.
    public var name: String {
        switch self {
        case .null: return "NULL"
        case .mnt: return "MNT"
        case .dump: return "DUMP"
        case .umnt: return "UMNT"
        case .umntall: return "UMNTALL"
        case .export: return "EXPORT"
        }
    }
}

/// mountstat3: the status of a MOUNT version 3 MNT reply (RFC 1813 §5.1.5).
public enum MountStatus3: UInt32, Sendable, Hashable, CaseIterable, XDRCodable {
    /// MNT3_OK: no error.
    case ok = 0
    /// MNT3ERR_PERM: not owner.
    case perm = 1
    /// MNT3ERR_NOENT: no such file or directory.
    case noent = 2
    /// MNT3ERR_IO: I/O error.
    case io = 5
    /// MNT3ERR_ACCES: permission denied.
    case acces = 13
    /// MNT3ERR_NOTDIR: not a directory.
    case notdir = 20
    /// MNT3ERR_INVAL: invalid argument.
    case inval = 22
    /// MNT3ERR_NAMETOOLONG: filename too long.
    case nametoolong = 63
    /// MNT3ERR_NOTSUPP: operation not supported.
    case notsupp = 10004
    /// MNT3ERR_SERVERFAULT: a failure on the server.
    case serverfault = 10006

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let raw = try buffer.readXDRUInt32()
        guard let value = MountStatus3(rawValue: raw) else {
            throw XDRError.invalidEnum(type: "mountstat3", value: raw)
        }
        self = value
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.rawValue)
    }
}

/// dirpath: `string dirpath<MNTPATHLEN>` (RFC 1813 §5.1.5), the argument of MNT and UMNT.
/// Bytes, as every name on the wire.
public struct DirPath: Sendable, Hashable, XDRCodable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.bytes = try buffer.readXDRStringBytes(maxLength: Mount.maxPathBytes)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDRVariableOpaque(self.bytes)
    }

    /// The path as UTF-8, invalid sequences replaced: for logs and comparison with config.
    public var description: String { String(decoding: self.bytes, as: UTF8.self) }
}

/// mountres3_ok (RFC 1813 §5.2.1).
public struct MountRes3OK: Sendable, Hashable, XDRCodable {
    /// The maximum number of auth flavors a decoder accepts.
    public static let maxAuthFlavors = 64

    /// fhandle: the file handle of the exported directory (fhandle3, at most 64 bytes).
    public var fhandle: FileHandle3
    /// auth_flavors: the RPC authentication flavors the export accepts, preferred first.
    public var authFlavors: [UInt32]

    public init(fhandle: FileHandle3, authFlavors: [UInt32]) {
        self.fhandle = fhandle
        self.authFlavors = authFlavors
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fhandle = try FileHandle3(xdr: &buffer)
        self.authFlavors = try buffer.readXDRArray(maxCount: Self.maxAuthFlavors) {
            (buffer: inout ByteBuffer) throws(XDRError) in try buffer.readXDRUInt32()
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fhandle.encode(xdr: &buffer)
        buffer.writeXDRArray(self.authFlavors) { $0.writeXDR($1) }
    }
}

/// mountres3: `union switch (mountstat3 fhs_status) { case MNT3_OK: mountres3_ok mountinfo;
/// default: void; }` (RFC 1813 §5.2.1).
public enum MountRes3: Sendable, Hashable, XDRCodable {
    case ok(MountRes3OK)
    /// Any status but `.ok`.
    case fail(MountStatus3)

    public var status: MountStatus3 {
        switch self {
        case .ok: return .ok
        case .fail(let status): return status
        }
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let status = try MountStatus3(xdr: &buffer)
        self = status == .ok ? .ok(try MountRes3OK(xdr: &buffer)) : .fail(status)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        switch self {
        case .ok(let body):
            MountStatus3.ok.encode(xdr: &buffer)
            body.encode(xdr: &buffer)
        case .fail(let status):
            status.encode(xdr: &buffer)
        }
    }
}

/// fhstatus: the MNT reply of MOUNT version 1, `union switch (unsigned fhs_status) { case 0:
/// fhandle fhs_fhandle; default: void; }` (RFC 1094 §A.3). The status is a UNIX errno; the
/// handle is a fixed 32 bytes, so only handles of at most 32 bytes (padded) can be given to
/// version 1 clients.
public enum FHStatus1: Sendable, Hashable, XDRCodable {
    /// Status 0 and the 32-byte handle.
    case ok(fhandle: [UInt8])
    /// A non-zero errno value.
    case fail(errno: UInt32)

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let status = try buffer.readXDRUInt32()
        if status == 0 {
            self = .ok(fhandle: try buffer.readXDRFixedOpaque(count: Mount.fileHandle1Bytes))
        } else {
            self = .fail(errno: status)
        }
    }

    /// Encodes the reply. A handle shorter than 32 bytes is padded with zeros and a longer one
    /// truncated; callers give version 1 clients only handles that fit.
    public func encode(xdr buffer: inout ByteBuffer) {
        switch self {
        case .ok(let fhandle):
            buffer.writeXDR(UInt32(0))
            var fixed = Array(fhandle.prefix(Mount.fileHandle1Bytes))
            fixed.append(contentsOf: repeatElement(0, count: Mount.fileHandle1Bytes - fixed.count))
            buffer.writeXDRFixedOpaque(fixed)
        case .fail(let errno):
            buffer.writeXDR(errno)
        }
    }
}

/// mountbody: one entry of the mount list returned by DUMP (RFC 1813 §5.2.2).
public struct MountBody: Sendable, Hashable, XDRCodable {
    /// ml_hostname: the client's host name or address (name<MNTNAMLEN>).
    public var hostname: [UInt8]
    /// ml_directory: the path it mounted (dirpath).
    public var directory: DirPath

    public init(hostname: [UInt8], directory: DirPath) {
        self.hostname = hostname
        self.directory = directory
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.hostname = try buffer.readXDRStringBytes(maxLength: Mount.maxNameBytes)
        self.directory = try DirPath(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDRVariableOpaque(self.hostname)
        self.directory.encode(xdr: &buffer)
    }
}

/// mountlist: the DUMP reply, `mountbody *` linked through ml_next (RFC 1813 §5.2.2).
public struct MountList: Sendable, Hashable, XDRCodable {
    public var entries: [MountBody]

    public init(_ entries: [MountBody]) { self.entries = entries }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.entries = try buffer.readXDRLinkedList { (buffer: inout ByteBuffer) throws(XDRError) in
            try MountBody(xdr: &buffer)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDRLinkedList(self.entries) { $1.encode(xdr: &$0) }
    }
}

/// exportnode: one exported directory and the groups allowed to mount it (RFC 1813 §5.2.5).
public struct ExportNode: Sendable, Hashable, XDRCodable {
    /// ex_dir
    public var directory: DirPath
    /// ex_groups: the `groups` list of names (name<MNTNAMLEN>), linked through gr_next.
    public var groups: [[UInt8]]

    public init(directory: DirPath, groups: [[UInt8]]) {
        self.directory = directory
        self.groups = groups
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.directory = try DirPath(xdr: &buffer)
        self.groups = try buffer.readXDRLinkedList { (buffer: inout ByteBuffer) throws(XDRError) in
            try buffer.readXDRStringBytes(maxLength: Mount.maxNameBytes)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.directory.encode(xdr: &buffer)
        buffer.writeXDRLinkedList(self.groups) { $0.writeXDRVariableOpaque($1) }
    }
}

/// exports: the EXPORT reply, `exportnode *` linked through ex_next (RFC 1813 §5.2.5).
public struct Exports: Sendable, Hashable, XDRCodable {
    public var entries: [ExportNode]

    public init(_ entries: [ExportNode]) { self.entries = entries }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.entries = try buffer.readXDRLinkedList { (buffer: inout ByteBuffer) throws(XDRError) in
            try ExportNode(xdr: &buffer)
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDRLinkedList(self.entries) { $1.encode(xdr: &$0) }
    }
}
