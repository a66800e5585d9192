import Foundation
import GRDB
import Glibc
import Logging

/// What a layer directory holds, for the administration commands.
public struct LayerReport: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// `tree/` + `layer.db`: a strata upper or a promoted layer.
        case strata
        /// Any other directory tree (OCI / overlayfs markers honoured).
        case plain
    }

    public var kind: Kind
    public var files: Int
    public var directories: Int
    /// Layer-relative paths of whited-out names.
    public var whiteouts: [String]
    /// Layer-relative paths of opaque directories ("" for the layer root).
    public var opaqueDirectories: [String]
    /// Layer-relative directory path → the path its lower content comes from.
    public var redirects: [String: String]
}

public enum LayerToolError: Error, Sendable, CustomStringConvertible {
    case notALayer(String)
    case destinationExists(String)
    case failed(String, UnionError)

    public var description: String {
        switch self {
        case .notALayer(let p):
            return "\(p) is not a strata layer directory (needs tree/ and a layer.db written by Strata)"
        case .destinationExists(let p): return "\(p) already exists: promote creates a new layer directory"
        case .failed(let what, let e): return "\(what): \(e)"
        }
    }
}

/// Inspection and promotion of layer directories (`strata layer inspect|promote`).
public enum LayerTools {
    /// Walks a layer directory and reports its files, whiteouts, opaque directories and redirects.
    public static func inspect(layerDirectory: String) throws -> LayerReport {
        let isStrata: Bool
        do { isStrata = try LayerFormat.isStrataLayer(layerDirectory) } catch {
            throw LayerToolError.failed("inspect \(layerDirectory)", error)
        }
        var report = LayerReport(
            kind: isStrata ? .strata : .plain, files: 0, directories: 0, whiteouts: [],
            opaqueDirectories: [], redirects: [:])
        do throws(UnionError) {
            let root = try Files.openDirectoryAbsolute(isStrata ? layerDirectory + "/tree" : layerDirectory)
            var dirPaths: [UInt64: String] = [:]
            try Self.walk(root, "", &dirPaths) { (dir, path, e, est) throws(UnionError) in
                if !isStrata {
                    if Names.isOCIMarker(e.name) {
                        if e.name == Names.ociOpaqueMarker {
                            report.opaqueDirectories.append(path)
                        } else {
                            report.whiteouts.append(
                                Self.join(path, String(decoding: e.name.dropFirst(4), as: UTF8.self)))
                        }
                        return false
                    }
                    if est.isOverlayWhiteout {
                        report.whiteouts.append(Self.join(path, e.name.displayString))
                        return false
                    }
                }
                if est.isDirectory {
                    report.directories += 1
                    if !isStrata {
                        let sub = try Files.openAt(dir, e.name, O_RDONLY | O_DIRECTORY, path: e.name.displayString)
                        for key in ["trusted.overlay.opaque", "user.overlay.opaque"]
                        where Files.getXattr(sub, key) == [0x79] {
                            report.opaqueDirectories.append(Self.join(path, e.name.displayString))
                        }
                    }
                } else {
                    report.files += 1
                }
                return est.isDirectory
            }
            if isStrata {
                let records = try LayerFormat.withStrataSidecar(layerDirectory, LayerRecords.load) ?? LayerRecords()
                for (ino, names) in records.whiteouts {
                    let base = dirPaths[ino] ?? "<missing directory inode \(ino)>"
                    for n in names { report.whiteouts.append(Self.join(base, n.displayString)) }
                }
                for ino in records.opaque {
                    report.opaqueDirectories.append(dirPaths[ino] ?? "<missing directory inode \(ino)>")
                }
                for (ino, target) in records.redirects {
                    report.redirects[dirPaths[ino] ?? "<missing directory inode \(ino)>"] = target.displayString
                }
            }
        } catch {
            throw LayerToolError.failed("inspect \(layerDirectory)", error)
        }
        report.whiteouts.sort()
        report.opaqueDirectories.sort()
        return report
    }

    static func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : a + "/" + b }

    /// Depth-first walk; `visit` returns whether to descend. `dirPaths` maps directory inodes to paths ("" = root).
    static func walk(
        _ dir: FD, _ path: String, _ dirPaths: inout [UInt64: String],
        _ visit: (FD, String, Files.DirEntry, stat) throws(UnionError) -> Bool
    ) throws(UnionError) {
        let st = try Files.fstat(dir, path: path)
        dirPaths[UInt64(st.st_ino)] = path
        for e in try Files.list(dir, path: path).sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) {
            guard let est = try Files.statAt(dir, e.name, path: path) else { continue }
            if try visit(dir, path, e, est) {
                let sub = try Files.openDirPath(dir, e.name, path: path)
                try Self.walk(sub, Self.join(path, e.name.displayString), &dirPaths, visit)
            }
        }
    }

    /// Copies a writable layer (`upper`: `tree/` + `layer.db`) into a new read-only layer directory `destination`
    /// (`tree/` + `layer.db` with its whiteouts, opaque markers and redirects re-keyed to the new tree), usable as a
    /// lower right above the lowers the upper was used with. Hard links inside the tree stay hard links; metadata,
    /// xattrs and holes are kept. Lower hard links copied up through one name (`index/`): every other lower name
    /// that shows the copy through the union is materialised in the new tree as a hard link to it, so the promoted
    /// layer is self-contained. The lowers are those the upper was last opened with (recorded in its sidecar), or
    /// `lowers` if given (top-most first, as for the namespace). Not carried over: identities (a new stack is a new
    /// namespace). The upper must not be in use.
    public static func promote(upper: String, lowers: [String]? = nil, to destination: String) throws {
        var st = stat()
        let isStrata: Bool
        do { isStrata = try LayerFormat.isStrataLayer(upper) } catch {
            throw LayerToolError.failed("promote \(upper)", error)
        }
        guard isStrata else { throw LayerToolError.notALayer(upper) }
        guard stat(destination, &st) != 0 else { throw LayerToolError.destinationExists(destination) }
        do throws(UnionError) {
            let staging = destination + ".promote-\(getpid())"
            try Files.mkdirAll(staging + "/tree")
            let src = try Files.openDirectoryAbsolute(upper + "/tree")
            let dst = try Files.openDirectoryAbsolute(staging + "/tree")
            var inoMap: [UInt64: UInt64] = [:]  // old directory inode → new
            var links: [UInt64: (FD, [UInt8])] = [:]  // old file inode (nlink > 1) → first copy
            try Self.copyTree(src, dst, "", &inoMap, &links)
            try Self.carryIndexedNames(upper: upper, lowers: lowers, into: dst, links: links)
            try UnionNamespace.setOwnerModeTimes(
                dst, Array(".".utf8), st: try Files.fstat(src, path: "tree"), path: "tree")
            let oldSidecar = try Sidecar(path: upper + "/layer.db", readOnly: true)
            let records = try oldSidecar.loadLayerRecords()
            oldSidecar.close()
            let newSidecar = try Sidecar(path: staging + "/layer.db", readOnly: false)
            try newSidecar.write("promote records") { db in
                for (ino, names) in records.whiteouts {
                    guard let n = inoMap[ino] else { continue }
                    for name in names { try WhiteoutRecord(dirIno: Int64(bitPattern: n), name: Data(name)).insert(db) }
                }
                for ino in records.opaque {
                    guard let n = inoMap[ino] else { continue }
                    try OpaqueRecord(dirIno: Int64(bitPattern: n)).insert(db)
                }
                for (ino, path) in records.redirects {
                    guard let n = inoMap[ino] else { continue }
                    try RedirectRecord(dirIno: Int64(bitPattern: n), path: Data(path)).insert(db)
                }
            }
            // A lower may sit on read-only storage, where SQLite cannot open a WAL database: leave a rollback journal.
            do {
                try newSidecar.queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE")
                }
            } catch {
                throw UnionError.sidecar("promote: journal mode: \(error)")
            }
            newSidecar.close()
            try Files.fsyncDirectory(try Files.openDirectoryAbsolute(staging), path: staging)
            guard Glibc.rename(staging, destination) == 0 else { throw Sys.error(errno, "rename", destination) }
            let parent = (destination as NSString).deletingLastPathComponent
            try Files.fsyncDirectory(try Files.openDirectoryAbsolute(parent.isEmpty ? "." : parent), path: parent)
        } catch {
            throw LayerToolError.failed("promote \(upper) to \(destination)", error)
        }
    }

    /// Re-images a writable layer (`strata client reset`), step one: the layer directory is renamed aside in one step
    /// (`<layer>.reset-<ms>`, flushed), so from that instant the layer is gone and a new one can be created at its
    /// path. Returns the aside path for `deleteDiscarded`. The layer must not be in use.
    public static func moveAside(layer: String) throws -> String {
        let aside = "\(layer).reset-\(UInt64(Date().timeIntervalSince1970 * 1000))"
        guard Glibc.rename(layer, aside) == 0 else {
            throw LayerToolError.failed("move \(layer) aside", Sys.error(errno, "rename", aside))
        }
        let parent = (aside as NSString).deletingLastPathComponent
        do throws(UnionError) {
            try Files.fsyncDirectory(try Files.openDirectoryAbsolute(parent.isEmpty ? "." : parent), path: parent)
        } catch {
            throw LayerToolError.failed("move \(layer) aside to \(aside)", error)
        }
        return aside
    }

    /// Step two: deletes a layer moved aside by `moveAside`, never following a symlink in it (a client made its
    /// contents).
    public static func deleteDiscarded(_ aside: String) throws {
        let parent = (aside as NSString).deletingLastPathComponent
        do throws(UnionError) {
            let parentFD = try Files.openDirectoryAbsolute(parent.isEmpty ? "." : parent)
            try Files.removeTree(parentFD, Array((aside as NSString).lastPathComponent.utf8), path: aside)
        } catch {
            throw LayerToolError.failed("delete \(aside)", error)
        }
    }

    static func copyTree(
        _ src: FD, _ dst: FD, _ path: String, _ inoMap: inout [UInt64: UInt64],
        _ links: inout [UInt64: (FD, [UInt8])]
    ) throws(UnionError) {
        inoMap[UInt64(try Files.fstat(src, path: path).st_ino)] = UInt64(try Files.fstat(dst, path: path).st_ino)
        for e in try Files.list(src, path: path) {
            guard let st = try Files.statAt(src, e.name, path: path) else { continue }
            let p = Self.join(path, e.name.displayString)
            if !st.isDirectory && st.st_nlink > 1, let (firstDir, firstName) = links[UInt64(st.st_ino)] {
                _ = try firstName.withCName { (a) throws(UnionError) -> CInt in
                    try e.name.withCName { (b) throws(UnionError) -> CInt in
                        try Sys.retry("linkat", p) { linkat(firstDir.raw, a, dst.raw, b, 0) }
                    }
                }
                continue
            }
            let parent = src
            let loc = Location(
                layer: 0, path: Array(p.utf8), parent: parent, name: e.name,
                dir: st.isDirectory ? try Files.openDirPath(src, e.name, path: p) : nil, st: st)
            try UnionNamespace.copyObject(loc, as: e.name, in: dst, path: p)
            if st.isDirectory, let sd = loc.dir {
                let dd = try Files.openDirPath(dst, e.name, path: p)
                try Self.copyTree(sd, dd, p, &inoMap, &links)
                try UnionNamespace.setOwnerModeTimes(dst, e.name, st: st, path: p)  // children changed its times
            } else if st.st_nlink > 1 {
                links[UInt64(st.st_ino)] = (dst, e.name)
            }
        }
        try Files.fsyncDirectory(dst, path: path)  // files were fsynced by copyObject; their names now too
    }

    /// The lowers recorded in an upper's sidecar (nil: never recorded, an upper from before `v4-lower-layers`).
    static func recordedLowers(_ sidecar: Sidecar) throws(UnionError) -> [String]? {
        try sidecar.read("read recorded lowers") { db -> [String]? in
            guard try db.tableExists("lowerLayer"),
                let signature = try MetaRecord.fetchOne(db, key: "lowerStack")
            else { return nil }
            let paths = try Row.fetchAll(db, sql: "SELECT path FROM lowerLayer ORDER BY position").map {
                (r: Row) -> String in String(decoding: r["path"] as Data, as: UTF8.self)
            }
            // Recorded with the signature in one transaction; an empty table with a non-empty stack is an upper
            // opened before v4 only.
            return UnionNamespace.stackSignature(paths) == UInt64(bitPattern: signature.value) ? paths : nil
        }
    }

    /// Lower names that show an `index/` copy through the union (not linked up into `tree/`, not whited out) become
    /// hard links to the promoted copy. The union is walked as the upper saw it: the upper read as a strata lower
    /// above its lowers (same layer indices as its identity records).
    static func carryIndexedNames(
        upper: String, lowers explicit: [String]?, into dst: FD, links: [UInt64: (FD, [UInt8])]
    ) throws(UnionError) {
        let sidecar = try Sidecar(path: upper + "/layer.db", readOnly: true)
        let (records, recorded) = try { () throws(UnionError) -> ([IdentityRecord], [String]?) in
            defer { sidecar.close() }
            let records = try sidecar.read("read indexed identities") { db in
                try IdentityRecord.filter(sql: "isIndexed AND upperIno IS NOT NULL").fetchAll(db)
            }
            return (records, try Self.recordedLowers(sidecar))
        }()
        // Indexed objects whose index/ copy still exists: origin (layer, ino) → (fileid, upper inode).
        var ist = stat()
        guard !records.isEmpty, stat(upper + "/index", &ist) == 0 else { return }
        let index = try Files.openDirectoryAbsolute(upper + "/index")
        var wanted: [OriginKey: (fileid: UInt64, upperIno: UInt64, st: stat)] = [:]
        for r in records {
            let fileid = UInt64(bitPattern: r.fileid ?? 0)
            guard let upperIno = r.upperIno.map({ UInt64(bitPattern: $0) }), r.originLayer > 0,
                let st = try Files.statAt(index, Array(String(fileid).utf8), path: "index/\(fileid)"),
                UInt64(st.st_ino) == upperIno, st.isRegular
            else { continue }
            wanted[OriginKey(layer: Int(r.originLayer), ino: UInt64(bitPattern: r.originIno))] = (fileid, upperIno, st)
        }
        if wanted.isEmpty { return }
        guard let lowers = explicit ?? recorded else {
            throw .invalid(
                "\(upper) holds copied-up lower hard links (index/) but does not record its lowers: open it once with "
                    + "this version, or pass the lowers")
        }
        let view = try UnionNamespace(
            upper: nil, lowers: [upper] + lowers, stateDirectory: nil, cachedObjects: 0,
            logger: Logger(label: "strata.promote"))
        defer { view.close() }

        // Union paths (directory chain + name) of every lower name showing an indexed object.
        struct Found {
            var dirs: [Location]
            var name: [UInt8]
        }
        var found: [OriginKey: [Found]] = [:]
        func visit(_ dir: Node, _ chain: [Location]) throws(UnionError) {
            for e in try view.mergedNames(dir).sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) {
                let key = OriginKey(layer: e.key.layer, ino: e.key.ino)
                if e.key.layer > 0, wanted[key] != nil {
                    guard let n = try view.child(of: dir, e.name), !n.isDirectory,
                        n.top.layer == key.layer, n.top.ino == key.ino
                    else { continue }
                    found[key, default: []].append(Found(dirs: chain, name: e.name))
                    continue
                }
                // Descend into directories that merge some lower directory (only those can hold lower names).
                guard let n = try view.child(of: dir, e.name), n.isDirectory, n.dirs.contains(where: { $0.layer > 0 })
                else { continue }
                try visit(n, chain + [n.top])
            }
        }
        try visit(try view.rootNode(), [])

        // Directories of the new tree that get entries: their times are restored afterwards.
        var touched: [[[UInt8]]: (fd: FD, st: stat, path: String)] = [
            []: (dst, try Files.fstat(dst, path: "tree"), "tree")
        ]
        func directory(_ chain: [Location]) throws(UnionError) -> FD {
            var fd = dst
            var path = ""
            var key: [[UInt8]] = []
            for loc in chain {
                let name = loc.name
                let p = Self.join(path, name.displayString)
                key.append(name)
                if let t = touched[key] {
                    fd = t.fd
                } else {
                    // The parent (already in `touched`) keeps its times: they are restored at the end.
                    if try Files.statAt(fd, name, path: p) == nil {
                        // The union showed a lower directory here: it takes that directory's metadata (a copy-up).
                        try UnionNamespace.copyObject(loc, as: name, in: fd, path: p)
                    }
                    let sub = try Files.openDirPath(fd, name, path: p)
                    touched[key] = (sub, try Files.fstat(sub, path: p), p)
                    fd = sub
                }
                path = p
            }
            return fd
        }
        func pathOf(_ f: Found) -> String {
            (f.dirs.map { $0.name.displayString } + [f.name.displayString]).joined(separator: "/")
        }

        for (key, names) in found.sorted(by: { ($0.key.layer, $0.key.ino) < ($1.key.layer, $1.key.ino) }) {
            guard let w = wanted[key], !names.isEmpty else { continue }
            var first = links[w.upperIno]
            for f in names {
                let dir = try directory(f.dirs)
                let p = pathOf(f)
                if let (firstDir, firstName) = first {
                    _ = try firstName.withCName { (a) throws(UnionError) -> CInt in
                        try f.name.withCName { (b) throws(UnionError) -> CInt in
                            try Sys.retry("linkat", p) { linkat(firstDir.raw, a, dir.raw, b, 0) }
                        }
                    }
                } else {
                    // No name of the copy in the upper tree: the index/ copy itself is promoted under this name.
                    let iname = Array(String(w.fileid).utf8)
                    let loc = Location(
                        layer: 0, path: Array("index/\(w.fileid)".utf8), parent: index, name: iname, dir: nil, st: w.st)
                    try UnionNamespace.copyObject(loc, as: f.name, in: dir, path: p)
                    first = (dir, f.name)
                }
            }
        }
        for (_, t) in touched.sorted(by: { $0.key.count > $1.key.count }) {
            try UnionNamespace.setOwnerModeTimes(t.fd, Array(".".utf8), st: t.st, path: t.path)
            try Files.fsyncDirectory(t.fd, path: t.path)
        }
    }
}
