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
        case .notALayer(let path):
            return "\(path) is not a strata layer directory (needs tree/ and a layer.db written by Strata)"
        case .destinationExists(let path): return "\(path) already exists: promote creates a new layer directory"
        case .failed(let what, let error): return "\(what): \(error)"
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
            try Self.walk(root, "", &dirPaths) { (dir, path, entry, entryStat) throws(UnionError) in
                if !isStrata {
                    if Names.isOCIMarker(entry.name) {
                        if entry.name == Names.ociOpaqueMarker {
                            report.opaqueDirectories.append(path)
                        } else {
                            report.whiteouts.append(
                                Self.join(path, String(decoding: entry.name.dropFirst(4), as: UTF8.self)))
                        }
                        return false
                    }
                    if entryStat.isOverlayWhiteout {
                        report.whiteouts.append(Self.join(path, entry.name.displayString))
                        return false
                    }
                }
                if entryStat.isDirectory {
                    report.directories += 1
                    if !isStrata {
                        let sub = try Files.openAt(
                            dir, entry.name, O_RDONLY | O_DIRECTORY, path: entry.name.displayString)
                        for key in ["trusted.overlay.opaque", "user.overlay.opaque"]
                        where Files.getXattr(sub, key) == [0x79] {
                            report.opaqueDirectories.append(Self.join(path, entry.name.displayString))
                        }
                    }
                } else {
                    report.files += 1
                }
                return entryStat.isDirectory
            }
            if isStrata {
                let records = try LayerFormat.withStrataSidecar(layerDirectory, LayerRecords.load) ?? LayerRecords()
                for (ino, names) in records.whiteouts {
                    let base = dirPaths[ino] ?? "<missing directory inode \(ino)>"
                    for name in names { report.whiteouts.append(Self.join(base, name.displayString)) }
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

    static func join(_ path: String, _ name: String) -> String { path.isEmpty ? name : path + "/" + name }

    /// Depth-first walk; `visit` returns whether to descend. `dirPaths` maps directory inodes to paths ("" = root).
    static func walk(
        _ dir: FD, _ path: String, _ dirPaths: inout [UInt64: String],
        _ visit: (FD, String, Files.DirEntry, stat) throws(UnionError) -> Bool
    ) throws(UnionError) {
        let st = try Files.fstat(dir, path: path)
        dirPaths[UInt64(st.st_ino)] = path
        for entry in try Files.list(dir, path: path).sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) {
            guard let entryStat = try Files.statAt(dir, entry.name, path: path) else { continue }
            if try visit(dir, path, entry, entryStat) {
                let sub = try Files.openDirPath(dir, entry.name, path: path)
                try Self.walk(sub, Self.join(path, entry.name.displayString), &dirPaths, visit)
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
        let isStrata: Bool
        let existing: stat?
        do {
            isStrata = try LayerFormat.isStrataLayer(upper)
            existing = try Files.statAbsolute(destination, followingLinks: true)
        } catch {
            throw LayerToolError.failed("promote \(upper)", error)
        }
        guard isStrata else { throw LayerToolError.notALayer(upper) }
        guard existing == nil else { throw LayerToolError.destinationExists(destination) }
        do throws(UnionError) {
            let staging = destination + ".promote-\(getpid())"
            try Files.mkdirAll(staging + "/tree")
            let src = try Files.openDirectoryAbsolute(upper + "/tree")
            let dst = try Files.openDirectoryAbsolute(staging + "/tree")
            var inoMap: [UInt64: UInt64] = [:]  // old directory inode → new
            var links: [UInt64: (FD, [UInt8])] = [:]  // old file inode (nlink > 1) → first copy
            try Self.copyTree(src, dst, "", &inoMap, &links)
            try Self.carryIndexedNames(upper: upper, lowers: lowers, into: dst, links: links)
            try FileCopy.setOwnerModeTimes(
                dst, Array(".".utf8), st: try Files.fstat(src, path: "tree"), path: "tree")
            let oldSidecar = try Sidecar(path: upper + "/layer.db", readOnly: true)
            let records = try oldSidecar.loadLayerRecords()
            oldSidecar.close()
            let newSidecar = try Sidecar(path: staging + "/layer.db", readOnly: false)
            try newSidecar.write("promote records") { db in
                for (ino, names) in records.whiteouts {
                    guard let newIno = inoMap[ino] else { continue }
                    for name in names {
                        try WhiteoutRecord(dirIno: newIno, name: Data(name)).insert(db)
                    }
                }
                for ino in records.opaque {
                    guard let newIno = inoMap[ino] else { continue }
                    try OpaqueRecord(dirIno: newIno).insert(db)
                }
                for (ino, path) in records.redirects {
                    guard let newIno = inoMap[ino] else { continue }
                    try RedirectRecord(dirIno: newIno, path: Data(path)).insert(db)
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
        for entry in try Files.list(src, path: path) {
            guard let st = try Files.statAt(src, entry.name, path: path) else { continue }
            let entryPath = Self.join(path, entry.name.displayString)
            if !st.isDirectory && st.st_nlink > 1, let (firstDir, firstName) = links[UInt64(st.st_ino)] {
                try Self.link(firstDir, firstName, dst, entry.name, path: entryPath)
                continue
            }
            let location = Location(
                layer: 0, path: Array(entryPath.utf8), parent: src, name: entry.name,
                dir: st.isDirectory ? try Files.openDirPath(src, entry.name, path: entryPath) : nil, st: st)
            try FileCopy.copyObject(location, as: entry.name, in: dst, path: entryPath)
            if st.isDirectory, let sourceDir = location.dir {
                let copyDir = try Files.openDirPath(dst, entry.name, path: entryPath)
                try Self.copyTree(sourceDir, copyDir, entryPath, &inoMap, &links)
                // Its children changed its times.
                try FileCopy.setOwnerModeTimes(dst, entry.name, st: st, path: entryPath)
            } else if st.st_nlink > 1 {
                links[UInt64(st.st_ino)] = (dst, entry.name)
            }
        }
        try Files.fsyncDirectory(dst, path: path)  // files were fsynced by copyObject; their names now too
    }

    /// Another name `name` in `dir` for the file `firstName` in `firstDir`.
    static func link(
        _ firstDir: FD, _ firstName: [UInt8], _ dir: FD, _ name: [UInt8], path: String
    )
        throws(UnionError)
    {
        _ = try firstName.withCName { (firstCName) throws(UnionError) -> CInt in
            try name.withCName { (cName) throws(UnionError) -> CInt in
                try Sys.retry("linkat", path) { linkat(firstDir.raw, firstCName, dir.raw, cName, 0) }
            }
        }
    }

    /// The lowers recorded in an upper's sidecar (nil: never recorded, an upper from before `v4-lower-layers`).
    static func recordedLowers(_ sidecar: Sidecar) throws(UnionError) -> [String]? {
        try sidecar.read("read recorded lowers") { db -> [String]? in
            guard try db.tableExists("lowerLayer"),
                let signature = try MetaRecord.fetchOne(db, key: "lowerStack")
            else { return nil }
            let paths = try Row.fetchAll(db, sql: "SELECT path FROM lowerLayer ORDER BY position").map {
                (row: Row) -> String in String(decoding: row["path"] as Data, as: UTF8.self)
            }
            // Recorded with the signature in one transaction; an empty table with a non-empty stack is an upper
            // opened before v4 only.
            return UnionNamespace.stackSignature(paths) == signature.value ? paths : nil
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
        guard !records.isEmpty, try Files.statAbsolute(upper + "/index", followingLinks: true) != nil else { return }
        let index = try Files.openDirectoryAbsolute(upper + "/index")
        var wanted: [OriginKey: (fileid: UInt64, upperIno: UInt64, st: stat)] = [:]
        for record in records {
            let fileid = record.fileid ?? 0
            guard let upperIno = record.upperIno, record.originLayer > 0,
                let st = try Files.statAt(index, Array(String(fileid).utf8), path: "index/\(fileid)"),
                UInt64(st.st_ino) == upperIno, st.isRegular
            else { continue }
            wanted[OriginKey(layer: Int(record.originLayer), ino: record.originIno)] = (
                fileid, upperIno, st
            )
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
            for entry in try view.mergedNames(dir).sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) {
                let key = OriginKey(layer: entry.key.layer, ino: entry.key.ino)
                if entry.key.layer > 0, wanted[key] != nil {
                    guard let node = try view.child(of: dir, entry.name), !node.isDirectory,
                        node.top.layer == key.layer, node.top.ino == key.ino
                    else { continue }
                    found[key, default: []].append(Found(dirs: chain, name: entry.name))
                    continue
                }
                // Descend into directories that merge some lower directory (only those can hold lower names).
                guard let node = try view.child(of: dir, entry.name), node.isDirectory,
                    node.dirs.contains(where: { $0.layer > 0 })
                else { continue }
                try visit(node, chain + [node.top])
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
            for location in chain {
                let name = location.name
                let subPath = Self.join(path, name.displayString)
                key.append(name)
                if let known = touched[key] {
                    fd = known.fd
                } else {
                    // The parent (already in `touched`) keeps its times: they are restored at the end.
                    if try Files.statAt(fd, name, path: subPath) == nil {
                        // The union showed a lower directory here: it takes that directory's metadata (a copy-up).
                        try FileCopy.copyObject(location, as: name, in: fd, path: subPath)
                    }
                    let sub = try Files.openDirPath(fd, name, path: subPath)
                    touched[key] = (sub, try Files.fstat(sub, path: subPath), subPath)
                    fd = sub
                }
                path = subPath
            }
            return fd
        }
        func pathOf(_ name: Found) -> String {
            (name.dirs.map { $0.name.displayString } + [name.name.displayString]).joined(separator: "/")
        }

        for (key, names) in found.sorted(by: { ($0.key.layer, $0.key.ino) < ($1.key.layer, $1.key.ino) }) {
            guard let copied = wanted[key], !names.isEmpty else { continue }
            var first = links[copied.upperIno]
            for name in names {
                let dir = try directory(name.dirs)
                let namePath = pathOf(name)
                if let (firstDir, firstName) = first {
                    try Self.link(firstDir, firstName, dir, name.name, path: namePath)
                } else {
                    // No name of the copy in the upper tree: the index/ copy itself is promoted under this name.
                    let location = Location(
                        layer: 0, path: Array("index/\(copied.fileid)".utf8), parent: index,
                        name: Array(String(copied.fileid).utf8), dir: nil, st: copied.st)
                    try FileCopy.copyObject(location, as: name.name, in: dir, path: namePath)
                    first = (dir, name.name)
                }
            }
        }
        for (_, touchedDir) in touched.sorted(by: { $0.key.count > $1.key.count }) {
            try FileCopy.setOwnerModeTimes(
                touchedDir.fd, Array(".".utf8), st: touchedDir.st, path: touchedDir.path)
            try Files.fsyncDirectory(touchedDir.fd, path: touchedDir.path)
        }
    }
}
