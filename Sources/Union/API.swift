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

/// An opaque, versioned handle of a union object: it names the object for as long as it exists, across restarts.
///
/// Layout (version 2, 20 bytes, big-endian):
///
///     byte 0       0x53 ('S')
///     byte 1       format version (2)
///     bytes 2-3    reserved, zero (a handle with anything else there is not ours)
///     bytes 4-11   fileid: never reused within a namespace, so a removed object's handle is `.stale` forever
///     bytes 12-19  tag: SipHash-2-4 of the fileid under the namespace's secret key (`HandleKey`)
///
/// The tag makes handles unforgeable: a handle whose tag does not match (a guessed fileid, or a handle of another
/// namespace, whose key differs) is `.stale`, as knfsd answers a handle whose inode generation does not match.
public struct ObjectHandle: Sendable, Hashable {
    /// The object's fileid (as GETATTR reports it).
    public let fileid: UInt64
    /// The authentication tag of `fileid` in its namespace.
    let tag: UInt64

    static let magic: UInt8 = 0x53
    static let version: UInt8 = 2
    static let length = 20

    /// - Returns: `nil` if the bytes are not a handle of this format (wrong length, magic or version, nonzero
    ///   reserved bytes).
    public init?(bytes: [UInt8]) {
        guard let handle = bytes.withUnsafeBytes({ ObjectHandle(raw: $0) }) else { return nil }
        self = handle
    }

    /// Decodes a handle from raw bytes (no copy); see `init(bytes:)`.
    public init?(raw bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Self.length, bytes[0] == Self.magic, bytes[1] == Self.version, bytes[2] == 0,
            bytes[3] == 0
        else {
            return nil
        }
        self.fileid = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt64.self))
        self.tag = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt64.self))
    }

    init(fileid: UInt64, tag: UInt64) {
        self.fileid = fileid
        self.tag = tag
    }

    /// The encoded handle (`length` bytes).
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.length) { buffer, count in
            self.write(to: UnsafeMutableRawBufferPointer(buffer))
            count = Self.length
        }
    }

    /// Writes the `length` encoded bytes at the start of `buffer`.
    public func write(to buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.length)
        buffer[0] = Self.magic
        buffer[1] = Self.version
        buffer[2] = 0
        buffer[3] = 0
        buffer.storeBytes(of: self.fileid.bigEndian, toByteOffset: 4, as: UInt64.self)
        buffer.storeBytes(of: self.tag.bigEndian, toByteOffset: 12, as: UInt64.self)
    }

    /// The size of every encoded handle.
    public static var encodedLength: Int { Self.length }
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
    /// True when `entries` reaches the end of the listing.
    public var isComplete: Bool

    public init(entries: [ListingEntry], isComplete: Bool = true) {
        self.entries = entries
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
    case noSpace
    case quotaExceeded
    case fileTooLarge
    case crossDevice
    /// SETATTR's ctime guard did not match (NFS3ERR_NOT_SYNC).
    case guardMismatch
    case notSupported(String)
    /// A system call failed; `path` is layer-relative (never an absolute host path beyond the layer).
    case io(errno: Int32, call: String, path: String)
    /// A sidecar (SQLite) failure; the string names the operation and the cause.
    case sidecar(String)
    /// A test's crash point stopped the change (`UnionHooks.crashAt`); never thrown without hooks.
    case simulatedCrash(point: String)
    /// A step would have waited (a lock a change holds, a flush, the sidecar) inside `NoWaiting.attempt`, which then
    /// answers nil: never an answer to a client.
    case wouldWait

    /// A change's answer about the names and permissions it found, as opposed to a failure of the disk or the sidecar.
    var isRefusal: Bool {
        switch self {
        case .noEntry, .exists, .notDirectory, .isDirectory, .notEmpty, .nameTooLong, .badName, .accessDenied,
            .notPermitted, .readOnly, .stale, .guardMismatch:
            true
        default:
            false
        }
    }
}
