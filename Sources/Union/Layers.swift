import Basics
import Foundation
import GRDB
import Glibc
import Synchronization

enum LayerKind: Sendable {
    /// The writable layer: `tree/`, `work/`, `index/`, `layer.db`.
    case upper
    /// A read-only layer that was once an upper (see `LayerFormat`): its sidecar records apply.
    case strataLower
    /// Any other directory tree: OCI and overlayfs whiteouts/opaque markers are honoured, never shown.
    case plainLower
}

/// One layer of the stack. Lowers are immutable, so what is learnt about them is cached.
final class Layer: Sendable {
    let index: Int
    let kind: LayerKind
    /// The layer directory as configured (logs only).
    let directory: String
    /// The directory the union sees (`tree/`, or the layer directory itself for a plain lower).
    let tree: FD
    /// Sidecar records of a strata lower (immutable); the upper's live in `UnionNamespace.state`.
    let lowerRecords: LayerRecords
    /// Plain lowers: directory inode → is opaque (overlayfs xattr or OCI `.wh..wh..opq`).
    let foreignOpaque = Locked<[UInt64: Bool]>([:])

    init(index: Int, kind: LayerKind, directory: String, tree: FD, lowerRecords: LayerRecords) {
        self.index = index
        self.kind = kind
        self.directory = directory
        self.tree = tree
        self.lowerRecords = lowerRecords
    }

    var isUpper: Bool { self.kind == .upper }

    /// Opens a lower layer directory: a Strata layer (see `LayerFormat`) is read through its sidecar records; any
    /// other directory is plain.
    static func openLower(index: Int, directory: String) throws(UnionError) -> Layer {
        if let records = try LayerFormat.withStrataSidecar(directory, LayerRecords.load) {
            return Layer(
                index: index, kind: .strataLower, directory: directory,
                tree: try Files.openDirectoryAbsolute(directory + "/tree"), lowerRecords: records)
        }
        return Layer(
            index: index, kind: .plainLower, directory: directory,
            tree: try Files.openDirectoryAbsolute(directory), lowerRecords: LayerRecords())
    }
}

/// The one test of what a layer directory is, for every caller (namespace open, `strata layer inspect|promote`).
///
/// A Strata layer is a real `tree/` directory (not a symlink) and a regular file `layer.db` that Strata made: its
/// `meta` table holds the format row (`layerFormat`, written by migration `v5-layer-format`), or, for layers made
/// before that row existed, its migration table records Strata's schema `v1` with the record tables. Anything else is
/// a plain tree, even one that holds `tree/` and some other `layer.db`: its records are never read. A Strata layer
/// is not trusted either: every name read from its records is checked as strictly as a name from the wire
/// (`LayerRecords.load`).
enum LayerFormat {
    static let markerKey = "layerFormat"
    /// The layer format this version writes and reads; a higher one is refused (made by a newer Strata).
    static let version: Int64 = 1

    static func isStrataLayer(_ directory: String) throws(UnionError) -> Bool {
        try Self.withStrataSidecar(directory) { _ in true } ?? false
    }

    /// Runs `body` on the layer's sidecar (read-only) if `directory` is a Strata layer; nil if it is plain.
    static func withStrataSidecar<T>(_ directory: String, _ body: (Database) throws -> T) throws(UnionError) -> T? {
        guard let tree = try Files.statAbsolute(directory + "/tree", followingLinks: false), tree.isDirectory,
            let sidecar = try Files.statAbsolute(directory + "/layer.db", followingLinks: false), sidecar.isRegular
        else { return nil }
        let dbPath = directory + "/layer.db"
        // A WAL database on read-only storage cannot be opened normally: then it is read as immutable (SQLite URI).
        // A live upper's sidecar cannot be read either (its server holds it exclusively, `Sidecar.exclusiveLocking`),
        // and read as immutable it would show only what was checkpointed: it is read from a copy, WAL included.
        var firstError: Error?
        for path in [dbPath, "file:\(dbPath)?immutable=1"] {
            do {
                var config = Configuration()
                config.readonly = true
                config.label = "strata.lower"
                return try Self.readStrata(try DatabaseQueue(path: path, configuration: config), dbPath, body)
            } catch let error as UnionError {
                throw error
            } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB {
                return nil  // some other file that happens to be called layer.db: a plain tree
            } catch let error as DatabaseError
                where path == dbPath && Self.heldByWriter.contains(error.resultCode)
                && access(dbPath + "-wal", F_OK) == 0
            {
                firstError = error
                do {
                    if let answer = try Self.readCopy(dbPath, body) { return answer }
                } catch let error as UnionError {
                    throw error
                } catch {
                    firstError = error
                }
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        throw .sidecar("open \(dbPath): \(firstError.map { "\($0)" } ?? "unknown error")")
    }

    /// What a read-only open of a sidecar that a running server holds fails with.
    private static let heldByWriter: [ResultCode] = [.SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_CANTOPEN, .SQLITE_READONLY]

    /// `body` on the database of `queue` (closed after) if it is a Strata sidecar; nil if it is not.
    private static func readStrata<T>(
        _ queue: DatabaseQueue, _ dbPath: String, _ body: (Database) throws -> T
    ) throws -> T? {
        defer { try? queue.close() }
        return try queue.read { db throws -> T? in
            guard try Self.isStrataDatabase(db, path: dbPath) else { return nil }
            return try body(db)
        }
    }

    /// `body` on a copy of the sidecar `dbPath` and its WAL in a private directory, checked whole (a copy taken while a
    /// checkpoint rewrote the database could be torn: then another is taken, up to five). `.some(nil)`: not a Strata
    /// database; nil: no whole copy could be made.
    private static func readCopy<T>(_ dbPath: String, _ body: (Database) throws -> T) throws -> T?? {
        for _ in 0..<5 {
            var template = Array((NSTemporaryDirectory() + "/strata-layer-XXXXXX").utf8CString)
            guard let made = mkdtemp(&template) else { return nil }
            let copyDirectory = String(cString: made)
            defer { try? FileManager.default.removeItem(atPath: copyDirectory) }
            let copy = copyDirectory + "/layer.db"
            do {
                try FileManager.default.copyItem(atPath: dbPath, toPath: copy)
                try FileManager.default.copyItem(atPath: dbPath + "-wal", toPath: copy + "-wal")
            } catch {
                continue  // the WAL went away meanwhile (a checkpoint on close): try again
            }
            var config = Configuration()
            config.label = "strata.layer-copy"
            let queue = try DatabaseQueue(path: copy, configuration: config)
            guard try queue.read({ db in try String.fetchOne(db, sql: "PRAGMA quick_check") == "ok" }) else {
                try? queue.close()
                continue
            }
            return .some(try Self.readStrata(queue, dbPath, body))
        }
        return nil
    }

    static func isStrataDatabase(_ db: Database, path: String) throws -> Bool {
        if try db.tableExists("meta"),
            let format = try Int64.fetchOne(
                db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [Self.markerKey])
        {
            guard format <= Self.version else {
                throw UnionError.invalid(
                    "\(path) is a layer of format \(format), newer than this Strata reads (\(Self.version)): upgrade Strata"
                )
            }
            return true
        }
        // Layers made before the format row: Strata's first migration and its record tables.
        guard try db.tableExists("grdb_migrations"),
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM grdb_migrations WHERE identifier = 'v1')") == true
        else { return false }
        for table in ["meta", "whiteout", "opaque", "redirect", "identity"] where try !db.tableExists(table) {
            return false
        }
        return true
    }
}

/// The upper layer's extra descriptors and its sidecar.
final class UpperLayer: Sendable {
    let directory: String
    let work: FD
    let index: FD
    let sidecar: Sidecar
    /// `lock`, flock'ed exclusively while this namespace is open.
    let lock: FD
    /// False when another open namespace holds the layer (a second open racing the first): this one then leaves
    /// `work/` alone, since the other may be in the middle of a copy-up there.
    let isExclusive: Bool
    /// Shared fsyncs of upper files (WRITE FILE_SYNC / DATA_SYNC, COMMIT).
    let fileSyncs = FileSyncs()
    /// Writers of one file, one at a time, asleep (`FileWriteGate`).
    let fileWrites = FileWriteGate()
    /// The device of `work/`, taken once: each CREATE asks how its file system names unnamed files
    /// (`UnnamedFiles.linking`), and an fstat per CREATE for that was a system call of its own.
    let workDevice: UInt64
    /// Whether REMOVE keeps empty files' inodes for the next CREATE (`SpareInodes.swift`): only where new inodes skip
    /// recently freed ones (ext4 without a journal). Elsewhere a spare costs a rename into `work/` (two directories
    /// changed) where an unlink changes one, and buys nothing (Docs/CRASH-ORDER.md, "Spare inodes").
    let keepsSpareInodes: Bool

    init(directory: String) throws(UnionError) {
        self.directory = directory
        try Files.mkdirAll(directory + "/tree")
        try Files.mkdirAll(directory + "/work", mode: 0o700)
        try Files.mkdirAll(directory + "/index", mode: 0o700)
        let lockPath = directory + "/lock"
        self.lock = FD(try Sys.retry("open", lockPath) { open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) })
        self.isExclusive = try Self.lockExclusively(self.lock, path: lockPath)
        self.work = try Files.openDirectoryAbsolute(directory + "/work")
        self.index = try Files.openDirectoryAbsolute(directory + "/index")
        self.workDevice = UInt64(try Files.fstat(self.work, path: directory + "/work").st_dev)
        self.sidecar = try Sidecar(path: directory + "/layer.db", readOnly: false)
        let tree = try Files.openDirectoryAbsolute(directory + "/tree")
        var mode = Files.filesystemSync(for: tree)
        self.keepsSpareInodes = Files.skipsRecentlyFreedInodes(tree, sync: mode)
        if case .wholeFilesystem = mode {
            let layerDevice = try Files.statAbsolute(directory, followingLinks: true)?.st_dev
            if layerDevice != (try Files.fstat(tree, path: directory + "/tree")).st_dev {
                mode = .eachObject(tree)  // a syncfs of tree/ would not cover the sidecar, which then syncs itself
            }
        }
        try self.sidecar.useFilesystemSync(mode)
    }

    /// Takes the layer's `lock` for this namespace; false when another namespace still holds it after `within`. A
    /// lock is held a moment longer than its namespace when another thread of the process forks (`posix_spawn`): the
    /// child holds a copy of every descriptor until its exec closes it, so a reopen right after a close could find the
    /// layer "open elsewhere" and leave work/ uncleaned. `onBusy` runs after each attempt that found it held (tests).
    static func lockExclusively(
        _ fd: FD, path: String, within: Duration = .seconds(1), onBusy: () -> Void = {}
    ) throws(UnionError) -> Bool {
        let deadline = ContinuousClock.now + within
        while true {
            if try Sys.tryLock(fd, path: path) { return true }
            onBusy()
            if ContinuousClock.now >= deadline { return false }
            usleep(2000)
        }
    }
}

/// Where one layer holds (part of) a union object.
struct Location: Sendable {
    var layer: Int
    /// Layer-relative path, components joined by `/` ("" for the layer root); logs and redirects.
    var path: [UInt8]
    /// O_PATH descriptor of the containing directory in this layer (nil for a layer root).
    var parent: FD?
    var name: [UInt8]
    /// O_PATH descriptor of the object itself when it is a directory.
    var dir: FD?
    var st: stat

    var ino: UInt64 { UInt64(self.st.st_ino) }
    var pathString: String { self.path.isEmpty ? "." : self.path.displayString }
}

/// A resolved union object: its identity and where its layers hold it.
struct Node: Sendable {
    var fileid: UInt64
    var parentFileid: UInt64
    var name: [UInt8]
    /// Top-most real entry: what getattr shows.
    var top: Location
    /// Directories: every contributing layer directory, top-down (first is `top`).
    var dirs: [Location]
    /// Directories: the path of this directory in the sub-union below the upper (its redirect, if it has one).
    var lowerPath: [[UInt8]]
    /// A lower hard link whose inode was copied up: the upper copy in `index/` holds its data.
    var indexed: Location?
    /// Regular files: the descriptor READ opened the data with, kept with the cached node (`readDescriptor`).
    var reader: ReadDescriptor? = nil

    var isDirectory: Bool { self.top.st.isDirectory }
    var type: FileType { self.top.st.fileType }
    /// The stat of what holds the data now (the index copy for a not-yet-linked-up hard link).
    var dataStat: stat { self.indexed?.st ?? self.top.st }
}

extension UnionNamespace {
    /// The upper layer, or `.readOnly` for a read-only or closed namespace.
    func requireUpper() throws(UnionError) -> UpperLayer {
        guard let upper = self.upper, !self.isClosed.load(ordering: .relaxed) else { throw .readOnly }
        return upper
    }

    func isUpper(_ location: Location) -> Bool { self.layers[location.layer].isUpper }
}
