// Transcribed from RFC 1813 §2.2 (Constants) and §2.4 (Sizes).

/// Constants of the NFS version 3 protocol (RFC 1813 §2).
public enum NFS3 {
    /// The ONC RPC program number of NFS (RFC 1813 §2.2).
    public static let program: UInt32 = 100_003
    /// The protocol version this module describes (RFC 1813 §2.2).
    public static let version: UInt32 = 3

    /// NFS3_FHSIZE: the maximum size in bytes of an opaque file handle (RFC 1813 §2.4).
    public static let fileHandleMaxBytes = 64
    /// NFS3_COOKIEVERFSIZE: the size in bytes of the READDIR cookie verifier (RFC 1813 §2.4).
    public static let cookieVerifierBytes = 8
    /// NFS3_CREATEVERFSIZE: the size in bytes of the exclusive-create verifier (RFC 1813 §2.4).
    public static let createVerifierBytes = 8
    /// NFS3_WRITEVERFSIZE: the size in bytes of the WRITE/COMMIT verifier (RFC 1813 §2.4).
    public static let writeVerifierBytes = 8

    /// The largest filename3 or nfspath3 accepted by the decoders.
    ///
    /// RFC 1813 leaves both strings unbounded. A name longer than the server's NAME_MAX (255)
    /// must still decode so the server can answer NFS3ERR_NAMETOOLONG rather than GARBAGE_ARGS,
    /// but the decode is bounded so a hostile length cannot make us allocate much.
    public static let maxDecodedNameBytes = 4096
    /// The largest nfspath3 (symbolic link target) accepted by the decoders (Linux PATH_MAX).
    public static let maxDecodedPathBytes = 4096
    /// The largest WRITE payload or READ reply payload accepted by the decoders by default:
    /// comfortably above the 1 MiB rtmax/wtmax Strata advertises in FSINFO.
    public static let maxDecodedDataBytes = 4 * 1024 * 1024
}

/// ACCESS3_* bits of the ACCESS procedure (RFC 1813 §3.3.4).
public struct Access3: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// ACCESS3_READ: read data from a file or read a directory.
    public static let read = Access3(rawValue: 0x0001)
    /// ACCESS3_LOOKUP: look up a name in a directory.
    public static let lookup = Access3(rawValue: 0x0002)
    /// ACCESS3_MODIFY: rewrite existing file data or modify existing directory entries.
    public static let modify = Access3(rawValue: 0x0004)
    /// ACCESS3_EXTEND: write new data or add directory entries.
    public static let extend = Access3(rawValue: 0x0008)
    /// ACCESS3_DELETE: delete an existing directory entry.
    public static let delete = Access3(rawValue: 0x0010)
    /// ACCESS3_EXECUTE: execute a file (no meaning for a directory).
    public static let execute = Access3(rawValue: 0x0020)
}

/// FSF3_* property bits of FSINFO (RFC 1813 §3.3.19).
public struct FSInfoProperties3: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// FSF3_LINK: the file system supports hard links.
    public static let link = FSInfoProperties3(rawValue: 0x0001)
    /// FSF3_SYMLINK: the file system supports symbolic links.
    public static let symlink = FSInfoProperties3(rawValue: 0x0002)
    /// FSF3_HOMOGENEOUS: PATHCONF answers are the same for every object of the file system.
    public static let homogeneous = FSInfoProperties3(rawValue: 0x0008)
    /// FSF3_CANSETTIME: SETATTR can set times to the client's values.
    public static let canSetTime = FSInfoProperties3(rawValue: 0x0010)
}
