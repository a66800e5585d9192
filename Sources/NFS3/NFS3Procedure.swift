import NIOCore
import XDR

// Transcribed from RFC 1813 §3 (Server Procedures), the program definition.

/// The procedures of NFS version 3 (RFC 1813 §3), by procedure number.
public enum NFS3Procedure: UInt32, Sendable, Hashable, CaseIterable {
    /// NFSPROC3_NULL: do nothing (RFC 1813 §3.3.0).
    case null = 0
    /// NFSPROC3_GETATTR: get file attributes (§3.3.1).
    case getattr = 1
    /// NFSPROC3_SETATTR: set file attributes (§3.3.2).
    case setattr = 2
    /// NFSPROC3_LOOKUP: look up a filename (§3.3.3).
    case lookup = 3
    /// NFSPROC3_ACCESS: check access permission (§3.3.4).
    case access = 4
    /// NFSPROC3_READLINK: read from a symbolic link (§3.3.5).
    case readlink = 5
    /// NFSPROC3_READ: read from a file (§3.3.6).
    case read = 6
    /// NFSPROC3_WRITE: write to a file (§3.3.7).
    case write = 7
    /// NFSPROC3_CREATE: create a regular file (§3.3.8).
    case create = 8
    /// NFSPROC3_MKDIR: create a directory (§3.3.9).
    case mkdir = 9
    /// NFSPROC3_SYMLINK: create a symbolic link (§3.3.10).
    case symlink = 10
    /// NFSPROC3_MKNOD: create a special device (§3.3.11).
    case mknod = 11
    /// NFSPROC3_REMOVE: remove a file (§3.3.12).
    case remove = 12
    /// NFSPROC3_RMDIR: remove a directory (§3.3.13).
    case rmdir = 13
    /// NFSPROC3_RENAME: rename a file or directory (§3.3.14).
    case rename = 14
    /// NFSPROC3_LINK: create a hard link (§3.3.15).
    case link = 15
    /// NFSPROC3_READDIR: read from a directory (§3.3.16).
    case readdir = 16
    /// NFSPROC3_READDIRPLUS: extended read from a directory (§3.3.17).
    case readdirplus = 17
    /// NFSPROC3_FSSTAT: get dynamic file system information (§3.3.18).
    case fsstat = 18
    /// NFSPROC3_FSINFO: get static file system information (§3.3.19).
    case fsinfo = 19
    /// NFSPROC3_PATHCONF: retrieve POSIX information (§3.3.20).
    case pathconf = 20
    /// NFSPROC3_COMMIT: commit cached data on the server to stable storage (§3.3.21).
    case commit = 21

    /// Whether a retransmission of this call must be answered from the duplicate request cache
    /// rather than executed again: repeating it would change the outcome (a second REMOVE
    /// answers NOENT, a second CREATE GUARDED answers EXIST).
    public var isNonIdempotent: Bool {
        switch self {
        case .setattr, .write, .create, .mkdir, .symlink, .mknod, .remove, .rmdir, .rename, .link:
            return true
        case .null, .getattr, .lookup, .access, .readlink, .read, .readdir, .readdirplus, .fsstat, .fsinfo,
            .pathconf, .commit:
            return false
        }
    }

    /// The RFC name of the procedure, for logs.
    public var name: String {
        switch self {
        case .null: return "NULL"
        case .getattr: return "GETATTR"
        case .setattr: return "SETATTR"
        case .lookup: return "LOOKUP"
        case .access: return "ACCESS"
        case .readlink: return "READLINK"
        case .read: return "READ"
        case .write: return "WRITE"
        case .create: return "CREATE"
        case .mkdir: return "MKDIR"
        case .symlink: return "SYMLINK"
        case .mknod: return "MKNOD"
        case .remove: return "REMOVE"
        case .rmdir: return "RMDIR"
        case .rename: return "RENAME"
        case .link: return "LINK"
        case .readdir: return "READDIR"
        case .readdirplus: return "READDIRPLUS"
        case .fsstat: return "FSSTAT"
        case .fsinfo: return "FSINFO"
        case .pathconf: return "PATHCONF"
        case .commit: return "COMMIT"
        }
    }
}
