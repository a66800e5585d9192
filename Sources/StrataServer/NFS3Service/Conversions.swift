import NFS3
import Union

// Union values ↔ NFSv3 wire values.

extension FileType3 {
    init(_ type: FileType) {
        switch type {
        case .regular: self = .reg
        case .directory: self = .dir
        case .symlink: self = .lnk
        case .characterDevice: self = .chr
        case .blockDevice: self = .blk
        case .socket: self = .sock
        case .fifo: self = .fifo
        }
    }
}

extension NFSTime3 {
    /// nfstime3 seconds are unsigned 32 bits; like knfsd we send the low 32 bits.
    init(_ time: Timespec) {
        self.init(seconds: UInt32(truncatingIfNeeded: time.seconds), nseconds: min(time.nanoseconds, 999_999_999))
    }
}

extension Timespec {
    init(_ time: NFSTime3) {
        self.init(seconds: Int64(time.seconds), nanoseconds: time.nseconds)
    }
}

extension FileAttributes3 {
    init(_ attributes: Attributes) {
        self.init(
            type: FileType3(attributes.type),
            mode: attributes.mode & 0o7777,
            nlink: attributes.nlink,
            uid: attributes.uid,
            gid: attributes.gid,
            size: attributes.size,
            used: attributes.usedBytes,
            rdev: SpecData3(specdata1: attributes.rdev.major, specdata2: attributes.rdev.minor),
            fsid: attributes.fsid,
            fileid: attributes.fileid,
            atime: NFSTime3(attributes.atime),
            mtime: NFSTime3(attributes.mtime),
            ctime: NFSTime3(attributes.ctime)
        )
    }
}

extension TimeChange {
    /// `nil` for DONT_CHANGE.
    init?(_ setTime: SetTime3) {
        switch setTime {
        case .dontChange: return nil
        case .setToServerTime: self = .serverTime
        case .setToClientTime(let time): self = .clientTime(Timespec(time))
        }
    }
}

extension SetAttributes {
    init(_ sattr: SetAttributes3) {
        self.init(
            mode: sattr.mode.map { $0 & 0o7777 },
            uid: sattr.uid,
            gid: sattr.gid,
            size: sattr.size,
            atime: TimeChange(sattr.atime),
            mtime: TimeChange(sattr.mtime)
        )
    }
}

extension StableHow {
    init(_ stable: StableHow3) {
        switch stable {
        case .unstable: self = .unstable
        case .dataSync: self = .dataSync
        case .fileSync: self = .fileSync
        }
    }
}

extension StableHow3 {
    init(_ stable: StableHow) {
        switch stable {
        case .unstable: self = .unstable
        case .dataSync: self = .dataSync
        case .fileSync: self = .fileSync
        }
    }
}

/// How a handler must treat a name from the wire before it reaches the union.
///
/// Linux knfsd answers "." and ".." per procedure (fs/nfsd/vfs.c): LOOKUP resolves them,
/// CREATE/MKDIR/SYMLINK/MKNOD/LINK answer NFS3ERR_EXIST, REMOVE/RMDIR NFS3ERR_ACCES and
/// RENAME NFS3ERR_PERM. We do the same so clients see the errors they know.
enum NFSName: Equatable {
    case dot
    case dotDot
    /// Empty, or contains "/" or NUL: NFS3ERR_INVAL.
    case invalid
    /// Longer than NAME_MAX (255): NFS3ERR_NAMETOOLONG.
    case tooLong
    case regular

    static let maxBytes = 255

    init(_ name: [UInt8]) {
        if name == [0x2E] {
            self = .dot
        } else if name == [0x2E, 0x2E] {
            self = .dotDot
        } else if name.isEmpty || name.contains(0x2F) || name.contains(0) {
            self = .invalid
        } else if name.count > NFSName.maxBytes {
            self = .tooLong
        } else {
            self = .regular
        }
    }

    /// The status for a name that may not be created, or nil for a regular name.
    var statusForCreation: NFSStatus3? {
        switch self {
        case .dot, .dotDot: return .exist
        case .invalid: return .inval
        case .tooLong: return .nametoolong
        case .regular: return nil
        }
    }

    /// The status for a name that may not be removed, or nil for a regular name.
    var statusForRemoval: NFSStatus3? {
        switch self {
        case .dot, .dotDot: return .acces
        case .invalid: return .inval
        case .tooLong: return .nametoolong
        case .regular: return nil
        }
    }

    /// The status for a RENAME source or target name, or nil for a regular name.
    var statusForRename: NFSStatus3? {
        switch self {
        case .dot, .dotDot: return .perm
        case .invalid: return .inval
        case .tooLong: return .nametoolong
        case .regular: return nil
        }
    }
}
