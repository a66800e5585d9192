import NFS3

// The boot script: what one diskless client did while it booted, as calls on paths from the
// export root, in a line-based text format (Docs/BOOT-TRACE.md). Paths instead of file
// handles so any number of clients can replay it against any server, each resolving the paths
// to its own handles as it goes.

/// The attributes a SETATTR, CREATE, MKDIR, SYMLINK or MKNOD sets (sattr3 without the client's
/// clock: a client-set time is replayed as the replaying client's current time).
public struct BootAttributes: Sendable, Equatable {
    public enum Time: String, Sendable, Equatable { case server, client }
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: Time?
    public var mtime: Time?

    public init(
        mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil, atime: Time? = nil,
        mtime: Time? = nil
    ) {
        (self.mode, self.uid, self.gid, self.size, self.atime, self.mtime) = (mode, uid, gid, size, atime, mtime)
    }
}

/// One operation of a boot script. Paths are absolute from the export root and names single
/// components, both in the script's percent-encoded form (see `BootPath`).
public enum BootOperation: Sendable, Equatable {
    case mount
    case unmount
    case null
    case getattr(String)
    case setattr(String, BootAttributes)
    case lookup(dir: String, name: String)
    case access(String, mask: UInt32)
    case readlink(String)
    case read(String, offset: UInt64, count: UInt32)
    case write(String, offset: UInt64, count: UInt32, stable: StableHow3)
    case create(dir: String, name: String, mode: CreateMode3, BootAttributes)
    case mkdir(dir: String, name: String, BootAttributes)
    case symlink(dir: String, name: String, target: String, BootAttributes)
    case mknod(dir: String, name: String, type: FileType3)
    case remove(dir: String, name: String)
    case rmdir(dir: String, name: String)
    case rename(dir: String, name: String, toDir: String, toName: String)
    case link(String, dir: String, name: String)
    /// `continued`: a later page, from the cookie the previous page of this directory ended at.
    case readdir(String, continued: Bool, count: UInt32)
    case readdirplus(String, continued: Bool, dircount: UInt32, maxcount: UInt32)
    case fsstat(String)
    case fsinfo(String)
    case pathconf(String)
    case commit(String, offset: UInt64, count: UInt32)

    /// The NFSv3 procedure of the operation; nil for the MOUNT calls.
    public var procedure: NFS3Procedure? {
        switch self {
        case .mount, .unmount: return nil
        case .null: return .null
        case .getattr: return .getattr
        case .setattr: return .setattr
        case .lookup: return .lookup
        case .access: return .access
        case .readlink: return .readlink
        case .read: return .read
        case .write: return .write
        case .create: return .create
        case .mkdir: return .mkdir
        case .symlink: return .symlink
        case .mknod: return .mknod
        case .remove: return .remove
        case .rmdir: return .rmdir
        case .rename: return .rename
        case .link: return .link
        case .readdir: return .readdir
        case .readdirplus: return .readdirplus
        case .fsstat: return .fsstat
        case .fsinfo: return .fsinfo
        case .pathconf: return .pathconf
        case .commit: return .commit
        }
    }

    /// The keyword of the operation in the script: the RFC's name of its procedure.
    public var keyword: String {
        switch self {
        case .mount: return "MNT"
        case .unmount: return "UMNT"
        default: return self.procedure?.name ?? ""
        }
    }

    /// Whether the status is a mountstat3 (MNT) rather than an nfsstat3.
    var isMount: Bool {
        switch self {
        case .mount, .unmount: return true
        default: return false
        }
    }

    /// The paths whose handles the call needs (resolved before it is sent).
    public var inputPaths: [String] {
        switch self {
        case .mount, .unmount, .null: return []
        case .getattr(let path), .setattr(let path, _), .access(let path, _), .readlink(let path),
            .read(let path, _, _),
            .write(let path, _, _, _), .readdir(let path, _, _), .readdirplus(let path, _, _, _), .fsstat(let path),
            .fsinfo(let path),
            .pathconf(let path), .commit(let path, _, _):
            return [path]
        case .lookup(let dir, _), .create(let dir, _, _, _), .mkdir(let dir, _, _), .symlink(let dir, _, _, _),
            .mknod(let dir, _, _),
            .remove(let dir, _), .rmdir(let dir, _):
            return [dir]
        case .rename(let dir, _, let toDir, _): return [dir, toDir]
        case .link(let path, let dir, _): return [path, dir]
        }
    }
}

/// One line of a boot script.
public struct BootCall: Sendable, Equatable {
    /// The line of the script it came from (1-based), for messages.
    public var line: Int
    /// When the recorded client started the call, in milliseconds since the recording began.
    public var startMilliseconds: Double
    /// The earlier calls (indices into `BootScript.calls`) still in flight when this one started
    /// in the recording. Every other earlier call had finished: the replay waits for them.
    public var overlapping: [Int]
    public var operation: BootOperation
    /// The status the recorded server answered (nfsstat3, or mountstat3 for MNT); the replay
    /// counts any other answer as an error.
    public var expectedStatus: UInt32

    public init(
        line: Int, startMilliseconds: Double, overlapping: [Int], operation: BootOperation, expectedStatus: UInt32
    ) {
        self.line = line
        self.startMilliseconds = startMilliseconds
        self.overlapping = overlapping
        self.operation = operation
        self.expectedStatus = expectedStatus
    }
}

/// A parsed boot script.
public struct BootScript: Sendable, Equatable {
    public static let header = "# strata boot script 1"
    public var calls: [BootCall]
    /// The comment lines (without "# ") that followed the header: where and how it was recorded.
    public var notes: [String]

    public init(calls: [BootCall], notes: [String] = []) {
        self.calls = calls
        self.notes = notes
    }
}

/// Why a boot script was refused: the line and what is wrong with it.
public struct BootScriptError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var source: String
    public var description: String { "\(self.source):\(self.line): \(self.message)" }
}

/// Percent-encoding of names and paths: bytes outside printable ASCII, and '%', ' ', '=' and
/// ',' are written %XX, so a line splits on spaces and every name survives byte for byte.
public enum BootPath {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = ""
        for byte in bytes {
            if byte > 0x20 && byte < 0x7f && byte != UInt8(ascii: "%") && byte != UInt8(ascii: "=")
                && byte != UInt8(ascii: ",")
            {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    /// The bytes of an encoded name, or nil if an escape is malformed.
    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let byte = bytes.popFirst() {
            if byte == UInt8(ascii: "%") {
                guard bytes.count >= 2, let high = hexValue(bytes.removeFirst()),
                    let low = hexValue(bytes.removeFirst())
                else { return nil }
                out.append(high << 4 | low)
            } else {
                out.append(byte)
            }
        }
        return out
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    /// `dir` joined with a looked-up `name` ("." is the directory, ".." its parent).
    public static func join(_ dir: String, _ name: String) -> String {
        switch name {
        case ".": return dir
        case "..": return parent(dir)
        default: return dir == "/" ? "/" + name : dir + "/" + name
        }
    }

    public static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), path != "/" else { return "/" }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// Status names as the script writes them: `OK`, `NOENT`, ... (mountstat3 for MNT).
enum StatusNames {
    static func name(_ raw: UInt32, mount: Bool) -> String {
        if mount {
            if let status = MountStatus3(rawValue: raw) { return "\(status)".uppercased() }
        } else if let status = NFSStatus3(rawValue: raw) {
            return "\(status)".uppercased()
        }
        return "\(raw)"
    }

    static func value(_ name: String, mount: Bool) -> UInt32? {
        if let number = UInt32(name) { return number }
        if mount { return MountStatus3.allCases.first { "\($0)".uppercased() == name }?.rawValue }
        return NFSStatus3.allCases.first { "\($0)".uppercased() == name }?.rawValue
    }
}

extension BootScript {
    /// The calls of the boot that change nothing and touch nothing the boot made or removed:
    /// what a client with a read-only root (its writable directories local) still asks the
    /// server. Overlaps are kept among the calls that remain.
    public func readOnlyPart() -> BootScript {
        var changed: Set<String> = []
        var kept: [Int: Int] = [:]
        var calls: [BootCall] = []
        func touchesChanged(_ path: String) -> Bool {
            changed.contains { path == $0 || path.hasPrefix($0 == "/" ? "/" : $0 + "/") }
        }
        for (index, call) in self.calls.enumerated() {
            var keep: Bool
            switch call.operation {
            case .create(let dir, let name, _, _), .mkdir(let dir, let name, _), .symlink(let dir, let name, _, _),
                .mknod(let dir, let name, _),
                .remove(let dir, let name), .rmdir(let dir, let name), .link(_, let dir, let name):
                keep = false
                if call.expectedStatus == 0 { changed.insert(BootPath.join(dir, name)) }
            case .rename(let dir, let name, let toDir, let toName):
                keep = false
                if call.expectedStatus == 0 {
                    changed.formUnion([BootPath.join(dir, name), BootPath.join(toDir, toName)])
                }
            case .write, .setattr, .commit:
                keep = false
            case .lookup(let dir, let name):
                keep = !touchesChanged(dir) && !touchesChanged(BootPath.join(dir, name))
            default:
                keep = !call.operation.inputPaths.contains(where: touchesChanged)
            }
            guard keep else { continue }
            var copy = call
            copy.overlapping = call.overlapping.compactMap { kept[$0] }
            kept[index] = calls.count
            calls.append(copy)
        }
        return BootScript(
            calls: calls,
            notes: self.notes + ["read-only part: calls that change nothing, on paths the boot did not change"])
    }
}
