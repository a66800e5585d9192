// Public value types of the union namespace. The NFS layer maps these to wire types; nothing here
// knows about NFS. See Sources/Union/API.md for the contract notes
// and Docs/SEMANTICS.md for what clients observe.

/// The caller's identity after squashing, as AUTH_SYS gives it.
public struct Credentials: Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]

    public init(uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// uid 0, the super-user.
    public static let root = Credentials(uid: 0, gid: 0, groups: [])

    var isRoot: Bool { self.uid == 0 }

    func isInGroup(_ gid: UInt32) -> Bool { self.gid == gid || self.groups.contains(gid) }
}

public enum FileType: Sendable, Hashable {
    case regular, directory, symlink, characterDevice, blockDevice, socket, fifo
}

public struct Timespec: Sendable, Hashable {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }
}

public struct DeviceNumber: Sendable, Hashable {
    public var major: UInt32
    public var minor: UInt32

    public init(major: UInt32, minor: UInt32) {
        self.major = major
        self.minor = minor
    }
}

/// What GETATTR reports for an object of the union.
public struct Attributes: Sendable, Equatable {
    public var type: FileType
    /// Permission, set-user-id, set-group-id and sticky bits only (`0o7777`).
    public var mode: UInt32
    public var nlink: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var usedBytes: UInt64
    public var rdev: DeviceNumber
    public var fsid: UInt64
    public var fileid: UInt64
    public var atime: Timespec
    public var mtime: Timespec
    public var ctime: Timespec

    public init(
        type: FileType, mode: UInt32, nlink: UInt32, uid: UInt32, gid: UInt32, size: UInt64, usedBytes: UInt64,
        rdev: DeviceNumber, fsid: UInt64, fileid: UInt64, atime: Timespec, mtime: Timespec, ctime: Timespec
    ) {
        self.type = type
        self.mode = mode
        self.nlink = nlink
        self.uid = uid
        self.gid = gid
        self.size = size
        self.usedBytes = usedBytes
        self.rdev = rdev
        self.fsid = fsid
        self.fileid = fileid
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
    }
}

public enum TimeChange: Sendable, Equatable {
    case serverTime
    case clientTime(Timespec)
}

/// The changes of a SETATTR (or the initial attributes of a CREATE/MKDIR/...); `nil` leaves a field alone.
public struct SetAttributes: Sendable, Equatable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: TimeChange?
    public var mtime: TimeChange?

    public init(
        mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil, atime: TimeChange? = nil,
        mtime: TimeChange? = nil
    ) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
    }

    var isEmpty: Bool {
        self.mode == nil && self.uid == nil && self.gid == nil && self.size == nil && self.atime == nil
            && self.mtime == nil
    }
}

/// An opaque, versioned file handle.
///
/// Layout (version 1, 24 bytes): `[0x53 'S', 0x01 version, 0, 0]`, 4 reserved zero bytes,
/// namespace id (8 bytes, big-endian), fileid (8 bytes, big-endian). fileids are never reused within a
/// namespace, so a removed object's handle resolves to nothing (`.stale`); a handle of another namespace
/// (another client's upper) is `.stale` too.
public struct ObjectHandle: Sendable, Hashable {
    public let bytes: [UInt8]

    static let magic: UInt8 = 0x53
    static let version: UInt8 = 1
    static let length = 24

    /// - Returns: `nil` if the bytes are not a handle of this format (wrong length, magic or version).
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.length, bytes[0] == Self.magic, bytes[1] == Self.version, bytes[2] == 0,
            bytes[3] == 0
        else { return nil }
        self.bytes = bytes
    }

    init(namespaceID: UInt64, fileid: UInt64) {
        var b: [UInt8] = [Self.magic, Self.version, 0, 0, 0, 0, 0, 0]
        b.reserveCapacity(Self.length)
        for shift in stride(from: 56, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: namespaceID >> shift)) }
        for shift in stride(from: 56, through: 0, by: -8) { b.append(UInt8(truncatingIfNeeded: fileid >> shift)) }
        self.bytes = b
    }

    var namespaceID: UInt64 { Self.readBE(self.bytes, at: 8) }
    var fileid: UInt64 { Self.readBE(self.bytes, at: 16) }

    private static func readBE(_ b: [UInt8], at offset: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in offset..<(offset + 8) { v = (v << 8) | UInt64(b[i]) }
        return v
    }
}

public enum CreateMode: Sendable, Equatable {
    case unchecked
    case guarded
    case exclusive(verifier: UInt64)
}

public enum StableHow: Sendable {
    case unstable, dataSync, fileSync
}

/// ACCESS bits, the same values as NFSv3 `ACCESS3_*` (RFC 1813 §3.3.4).
public struct AccessMask: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let read = AccessMask(rawValue: 0x01)
    public static let lookup = AccessMask(rawValue: 0x02)
    public static let modify = AccessMask(rawValue: 0x04)
    public static let extend = AccessMask(rawValue: 0x08)
    public static let delete = AccessMask(rawValue: 0x10)
    public static let execute = AccessMask(rawValue: 0x20)
    public static let all: AccessMask = [.read, .lookup, .modify, .extend, .delete, .execute]
}

public struct ListingEntry: Sendable, Equatable {
    public var name: [UInt8]
    public var fileid: UInt64
    public var cookie: UInt64

    public init(name: [UInt8], fileid: UInt64, cookie: UInt64) {
        self.name = name
        self.fileid = fileid
        self.cookie = cookie
    }
}

public struct ListingPage: Sendable {
    /// All remaining entries after the cookie (or at most `limit` of them), in cookie order.
    public var entries: [ListingEntry]
    /// Always 0: cookies are always valid (RFC 1813 §3.3.16 allows a zero cookieverf then).
    public var cookieVerifier: UInt64
    /// True when `entries` reaches the end of the listing.
    public var isComplete: Bool

    public init(entries: [ListingEntry], cookieVerifier: UInt64, isComplete: Bool = true) {
        self.entries = entries
        self.cookieVerifier = cookieVerifier
        self.isComplete = isComplete
    }
}

public struct FileSystemStats: Sendable, Equatable {
    public var totalBytes: UInt64
    public var freeBytes: UInt64
    public var availableBytes: UInt64
    public var totalFiles: UInt64
    public var freeFiles: UInt64
    public var availableFiles: UInt64

    public init(
        totalBytes: UInt64, freeBytes: UInt64, availableBytes: UInt64, totalFiles: UInt64, freeFiles: UInt64,
        availableFiles: UInt64
    ) {
        self.totalBytes = totalBytes
        self.freeBytes = freeBytes
        self.availableBytes = availableBytes
        self.totalFiles = totalFiles
        self.freeFiles = freeFiles
        self.availableFiles = availableFiles
    }
}

/// The one error type of the union core. `StrataServer` maps it to NFS status codes.
public enum UnionError: Error, Sendable, Equatable {
    case noEntry
    case exists
    case notDirectory
    case isDirectory
    case invalid(String)
    case notEmpty
    case nameTooLong
    case badName
    case accessDenied
    case notPermitted
    case readOnly
    case stale
    case badHandle
    case noSpace
    case quotaExceeded
    case fileTooLarge
    case crossDevice
    /// SETATTR's ctime guard did not match (NFS3ERR_NOT_SYNC).
    case guardMismatch
    case badCookie
    case notSupported(String)
    /// A system call failed; `path` is layer-relative (never an absolute host path beyond the layer).
    case io(errno: Int32, call: String, path: String)
    /// A sidecar (SQLite) failure; the string names the operation and the cause.
    case sidecar(String)
}
