import Glibc
import Logging

// Open-time repair of the upper layer (run by `UnionNamespace.init`, best effort): what a crash or an interrupted
// change left behind in `work/`, in the directory records and in the identities is put back in line with `tree/`.

extension UnionNamespace {
    /// Open-time repair: `work/` leftovers of interrupted copy-ups and creations are removed, and identity records
    /// that already pointed at them (committed just before the publishing rename) are reset to their lower origin.
    /// Sidecar records keyed by a directory inode are not swept (it would need a walk of `tree/`): a record of a
    /// removed directory is deleted with it, and a new upper directory clears any record left on its inode.
    func cleanWork() throws(UnionError) {
        guard let upper = self.upper else { return }
        guard upper.isExclusive else {
            self.logger.warning(
                "upper layer is open in another namespace: work/ not cleaned", metadata: ["layer": "\(upper.directory)"]
            )
            return
        }
        var inodes: [UInt64] = []
        for entry in try Files.list(upper.work, path: "work") {
            inodes.append(entry.ino)
            try Files.removeTree(upper.work, entry.name, path: "work/" + entry.name.displayString)
            // Spare inodes of the last run are expected there (`SpareInodes`); anything else was cut short.
            if entry.name.starts(with: Array("spare-".utf8)) { continue }
            self.logger.notice(
                "removed work/ leftover",
                metadata: ["layer": "\(upper.directory)", "name": "\(entry.name.displayString)"])
        }
        self.identities.clearUpper(inodes: inodes)
        try self.clearDirectoryRecords(inodes)
        try self.checkSidecarAgainstTree(upper)
    }

    /// Open-time check of the sidecar against `tree/` (and `index/`): directory records (whiteouts, opaque markers,
    /// redirects) whose directory inode is no longer a directory of the tree are dropped (a crash between an rmdir
    /// and the record cleanup leaves them, and a reused inode must not inherit them); identities whose upper inode
    /// is gone fall back to their lower origin (or are forgotten when they had none). Whiteouts shadowed by a real
    /// entry are left alone: the real entry beats them, and create drops them anyway.
    func checkSidecarAgainstTree(_ upper: UpperLayer) throws(UnionError) {
        var dirInodes: Set<UInt64> = []
        var allInodes: Set<UInt64> = []
        // Where each upper object with an identity was found: its recorded name is checked against it below.
        let known = self.identities.tables.withLock { Set($0.byUpper.keys) }
        var foundAt: [UInt64: [(parentIno: UInt64, name: [UInt8])]] = [:]
        func walk(_ fd: FD, _ dirIno: UInt64, _ path: String) throws(UnionError) {
            for entry in try Files.list(fd, path: path) {
                allInodes.insert(entry.ino)
                if known.contains(entry.ino) { foundAt[entry.ino, default: []].append((dirIno, entry.name)) }
                if entry.type == UInt8(DT_DIR) {
                    dirInodes.insert(entry.ino)
                    try walk(
                        try Files.openDirPath(fd, entry.name, path: path), entry.ino,
                        path + "/" + entry.name.displayString)
                }
            }
        }
        let rootIno = UInt64(try Files.fstat(self.layers[0].tree, path: "tree").st_ino)
        dirInodes.insert(rootIno)
        allInodes.insert(rootIno)
        try walk(self.layers[0].tree, rootIno, "tree")
        for entry in try Files.list(upper.index, path: "index") { allInodes.insert(entry.ino) }
        let staleDirs = self.upperRecords.withLock { records in
            Set(records.whiteouts.keys).union(records.opaque).union(records.redirects.keys).subtracting(dirInodes)
        }
        if !staleDirs.isEmpty {
            var change = RecordChange()
            change.clearDirectories = Array(staleDirs)
            try self.commit(change, "drop records of vanished directories")
            self.logger.notice(
                "dropped sidecar records of vanished directories", metadata: ["count": "\(staleDirs.count)"])
        }
        let goneUpper = self.identities.tables.withLock { tables in
            tables.byUpper.keys.filter { !allInodes.contains($0) }
        }
        if !goneUpper.isEmpty {
            self.identities.clearUpper(inodes: goneUpper)
            self.logger.notice(
                "identities whose upper object vanished fell back to their origin",
                metadata: ["count": "\(goneUpper.count)"])
        }
        // A rename reaches tree/ before its identity record is durable (both are in one group commit): an object none
        // of whose known names leads to it any more gets the name it was found at.
        var renamed = 0
        for (ino, places) in foundAt {
            let fix = self.identities.tables.withLock { (tables) -> (UInt64, LinkName, LinkName)? in
                guard let fileid = tables.byUpper[ino], fileid != self.rootFileid,
                    let identity = tables.byFileid[fileid]
                else { return nil }
                func name(_ place: (parentIno: UInt64, name: [UInt8])) -> LinkName? {
                    let parent = place.parentIno == rootIno ? self.rootFileid : tables.byUpper[place.parentIno]
                    return parent.map { LinkName(parent: $0, name: place.name) }
                }
                let names = places.compactMap(name)
                let recorded = LinkName(parent: identity.parent, name: identity.name)
                let others = tables.otherNames[fileid] ?? []
                guard let first = names.first, !names.contains(recorded), !names.contains(where: others.contains)
                else { return nil }
                return (fileid, recorded, first)
            }
            guard let (fileid, from, to) = fix else { continue }
            self.identities.moved(fileid, from: from, to: to)
            renamed += 1
        }
        if renamed > 0 {
            self.logger.notice(
                "identity names repaired from tree/ (renames cut short)", metadata: ["count": "\(renamed)"])
        }
    }
}
