import Glibc
import Synchronization

enum LayerKind: Sendable {
    /// The writable layer: `tree/`, `work/`, `index/`, `layer.db`.
    case upper
    /// A read-only layer that was once an upper (`tree/` + `layer.db`): its sidecar records apply.
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

    /// Opens a lower layer directory: with `tree/` and `layer.db` it is a promoted strata layer.
    static func openLower(index: Int, directory: String) throws(UnionError) -> Layer {
        var st = stat()
        let dbPath = directory + "/layer.db"
        let treePath = directory + "/tree"
        if stat(dbPath, &st) == 0, stat(treePath, &st) == 0, st.isDirectory {
            let records: LayerRecords
            do {
                let sidecar = try Sidecar(path: dbPath, readOnly: true)
                defer { sidecar.close() }
                records = try sidecar.loadLayerRecords()
            } catch {
                // A WAL database on read-only storage cannot be opened normally: read it as immutable (SQLite URI).
                let sidecar = try Sidecar(path: "file:\(dbPath)?immutable=1", readOnly: true)
                defer { sidecar.close() }
                records = try sidecar.loadLayerRecords()
            }
            return Layer(
                index: index, kind: .strataLower, directory: directory,
                tree: try Files.openDirectoryAbsolute(treePath), lowerRecords: records)
        }
        return Layer(
            index: index, kind: .plainLower, directory: directory,
            tree: try Files.openDirectoryAbsolute(directory), lowerRecords: LayerRecords())
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

    init(directory: String) throws(UnionError) {
        self.directory = directory
        try Files.mkdirAll(directory + "/tree")
        try Files.mkdirAll(directory + "/work", mode: 0o700)
        try Files.mkdirAll(directory + "/index", mode: 0o700)
        let lockPath = directory + "/lock"
        self.lock = FD(try Sys.retry("open", lockPath) { open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) })
        self.isExclusive = flock(self.lock.raw, LOCK_EX | LOCK_NB) == 0
        self.work = try Files.openDirectoryAbsolute(directory + "/work")
        self.index = try Files.openDirectoryAbsolute(directory + "/index")
        self.sidecar = try Sidecar(path: directory + "/layer.db", readOnly: false)
        let tree = try Files.openDirectoryAbsolute(directory + "/tree")
        var mode = Files.filesystemSync(for: tree)
        var dst = stat(), tst = stat()
        if case .wholeFilesystem = mode, stat(directory, &dst) != 0 || Glibc.fstat(tree.raw, &tst) != 0
            || dst.st_dev != tst.st_dev
        {
            mode = .eachObject  // a syncfs of tree/ would not cover the sidecar, which then syncs itself
        }
        try self.sidecar.useFilesystemSync(mode)
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

    var isDirectory: Bool { self.top.st.isDirectory }
    var type: FileType { self.top.st.fileType }
    /// The stat of what holds the data now (the index copy for a not-yet-linked-up hard link).
    var dataStat: stat { self.indexed?.st ?? self.top.st }
}
