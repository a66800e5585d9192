import Glibc

// REMOVE, RMDIR, LINK. Crash order for a removal (Docs/CRASH-ORDER.md): the whiteout (when something below has the
// name) is durable before the upper entry is unlinked (the upper entry, if any, still beats it; then the whiteout
// hides what is below); forgetting the records of what went away and the parent's sync go to the group commit.

extension UnionNamespace {
    func requireDeletable(_ dir: Node, _ entry: Node, _ cred: Credentials) throws(UnionError) {
        try Permission.require(dir.top.st, cred, Permission.write | Permission.exec)
        if !Permission.mayDeleteEntry(dir: dir.top.st, entry: entry.top.st, cred) { throw .accessDenied }
    }

    /// The upper directory of `dir`, resolved under the running change's lock: `dir` itself when it is in the upper layer
    /// (no second resolution and stat of it), else copied up.
    func upperDirectory(of dir: Node) throws(UnionError) -> Location {
        if self.isUpper(dir.top), dir.top.dir != nil { return dir.top }
        return try self.upperDirectory(dir.fileid)
    }

    /// Whether `node` is gone once its entry in `dir` is removed (no other hard link keeps it).
    func isLastLink(_ node: Node) -> Bool {
        if node.isDirectory { return true }
        if self.identities.identity(node.fileid)?.isIndexed == true { return false }
        return node.top.st.st_nlink <= 1
    }

    /// REMOVE of a non-directory.
    public func remove(in dir: ObjectHandle, _ name: [UInt8], as cred: Credentials) throws(UnionError) {
        _ = try self.removeNamed(in: dir, name, as: cred, directory: false)
    }

    /// RMDIR: the *merged* directory must be empty.
    public func rmdir(in dir: ObjectHandle, _ name: [UInt8], as cred: Credentials) throws(UnionError) {
        _ = try self.removeNamed(in: dir, name, as: cred, directory: true)
    }

    /// REMOVE with the directory's attributes before and after, taken with the change.
    public func removeChange(
        in dir: ObjectHandle, _ name: [UInt8], as cred: Credentials
    ) throws(UnionError)
        -> ChangeResult
    {
        try self.removeNamed(in: dir, name, as: cred, directory: false)
    }

    /// RMDIR with the directory's attributes before and after.
    public func rmdirChange(
        in dir: ObjectHandle, _ name: [UInt8], as cred: Credentials
    ) throws(UnionError)
        -> ChangeResult
    {
        try self.removeNamed(in: dir, name, as: cred, directory: true)
    }

    /// REMOVE (`directory` false) or RMDIR (true, and the merged directory must be empty) of `name` in `dir`.
    private func removeNamed(
        in dir: ObjectHandle, _ name: [UInt8], as cred: Credentials, directory: Bool
    ) throws(UnionError) -> ChangeResult {
        try Names.validate(name)
        _ = try self.requireUpper()
        return try self.mutate { () throws(UnionError) -> ChangeResult in
            let parent = try self.resolveDirectory(dir)
            let before = self.attributes(parent)
            try Permission.require(parent.top.st, cred, Permission.write | Permission.exec)
            guard let entry = try self.child(of: parent, name) else { throw .noEntry }
            if entry.isDirectory != directory { throw directory ? .notDirectory : .isDirectory }
            try self.requireDeletable(parent, entry, cred)
            if directory, try !self.mergedNames(entry).isEmpty { throw .notEmpty }
            let after = try self.removeEntry(parent, entry)
            return ChangeResult(directory: BeforeAfter(before: before, after: after))
        }
    }

    /// Removes `entry` from `dir`; returns `dir`'s attributes after.
    func removeEntry(_ dir: Node, _ entry: Node) throws(UnionError) -> Attributes {
        let below = try self.existsBelow(dir, entry.name)
        let inUpper = self.isUpper(entry.top)
        let parent: Location? = below || inUpper ? try self.upperDirectory(of: dir) : nil
        // Step 1: whiteout (a crash now: the upper entry, if any, beats it; nothing changed for clients). It must be
        // durable before the unlink below, else a crash could bring the lower object back.
        if below, let parent {
            var change = RecordChange()
            change.addWhiteouts = [(parent.ino, entry.name)]
            if self.isCountedLowerName(entry) { change.lowerNamesGone = [entry.fileid] }  // one visible name fewer
            let seq = try self.commit(change, "whiteout removed name")
            if inUpper { try self.durable(seq) }
        }
        self.evictNode(entry.fileid, isDirectory: entry.isDirectory)
        try self.crashPoint("remove.afterWhiteout")
        // Step 2: unlink the upper entry (a crash now: the whiteout hides what is below; records are stale only). An
        // empty upper-only file is moved to work/ instead, its inode kept for the next CREATE (`SpareInodes.swift`; a
        // crash: a work/ leftover, removed at open).
        if inUpper, !below, let parent, let pfd = parent.dir, self.mayKeepAsSpare(entry) {
            try self.keepAsSpare(pfd, entry.name, path: Names.join(parent.path, entry.name).displayString)
            self.changed(.directory(pfd, path: parent.pathString))
        } else if inUpper, let parent, let pfd = parent.dir {
            let path = Names.join(parent.path, entry.name).displayString
            // Its blocks and links as they are now (the node may have been resolved before a WRITE).
            let fresh = self.syncsEachObject ? try Files.statAt(pfd, entry.name, path: path) : nil
            _ = try entry.name.withCName { (cName) throws(UnionError) -> CInt in
                try Sys.retry("unlinkat", path) { unlinkat(pfd.raw, cName, entry.isDirectory ? AT_REMOVEDIR : 0) }
            }
            self.changed(.directory(pfd, path: parent.pathString))
            if let fresh { self.changedByUnlink(fresh, path: path) }
        }
        try self.crashPoint("remove.afterUnlink")
        // Step 3: forget what went away.
        if entry.isDirectory && inUpper { try self.clearDirectoryRecords([entry.top.ino]) }
        if self.isLastLink(entry) {
            self.identities.forget(entry.fileid)
        } else {
            self.identities.removedName(entry.fileid, LinkName(parent: dir.fileid, name: entry.name))
        }
        self.invalidateListing(dir.fileid, entry.fileid)
        return try self.attributesNow(dir, upper: parent)
    }

    /// LINK: a new name for a non-directory; a lower object is copied up first (its other lower names follow
    /// through the index). Linking someone else's file needs read and write permission on it (protected_hardlinks).
    public func link(
        _ h: ObjectHandle, in dir: ObjectHandle, _ name: [UInt8], as cred: Credentials
    ) throws(UnionError)
        -> Attributes
    {
        try self.linkChange(h, in: dir, name, as: cred).attributes!
    }

    /// LINK with the object's attributes after and the directory's before and after, taken with the change. A lower
    /// file's data is copied up first without the namespace write lock.
    public func linkChange(
        _ h: ObjectHandle, in dir: ObjectHandle, _ name: [UInt8], as cred: Credentials
    )
        throws(UnionError) -> ChangeResult
    {
        try Names.validate(name)
        _ = try self.requireUpper()
        try self.copyUpOutsideChange(h) { (node) throws(UnionError) -> Bool in
            // Only what the change would do anyway: a refused LINK copies nothing.
            !node.isDirectory && (try? self.requireLinkable(node, cred)) != nil
        }
        return try self.mutate { () throws(UnionError) -> ChangeResult in
            let target = try self.resolve(h)
            if target.isDirectory { throw .notPermitted }  // link(2) and RFC 1813 (no ISDIR for LINK): EPERM
            let directory = try self.resolveDirectory(dir)
            let before = self.attributes(directory)
            try Permission.require(directory.top.st, cred, Permission.write | Permission.exec)
            if try self.child(of: directory, name) != nil { throw .exists }
            try self.requireLinkable(target, cred)
            let linked = try self.ensureUpper(target)
            let parent = try self.upperDirectory(directory.fileid)
            guard let pfd = parent.dir, let tparent = linked.top.parent else { throw .notDirectory }
            let whitedOut = try self.isWhiteout(in: parent, name)
            let path = Names.join(parent.path, name).displayString
            _ = try linked.top.name.withCName { (src) throws(UnionError) -> CInt in
                try name.withCName { (dst) throws(UnionError) -> CInt in
                    try Sys.retry("linkat", path) { linkat(tparent.raw, src, pfd.raw, dst, 0) }
                }
            }
            self.changed(.directory(pfd, path: parent.pathString))
            if self.syncsEachObject {
                // The inode's link count changed: a regular file is fsynced, anything else cannot be opened for it.
                if linked.top.st.isRegular {
                    self.changed(.file(try Files.openAt(pfd, name, O_RDONLY | O_NOFOLLOW, path: path), path: path))
                } else {
                    self.changed(.filesystem(path: path))
                }
            }
            if whitedOut {
                var change = RecordChange()
                change.dropWhiteouts = [(parent.ino, name)]
                try self.commit(change, "drop whiteout under new link", afterSync: true)
            }
            self.identities.addName(linked.fileid, LinkName(parent: directory.fileid, name: name))
            self.invalidateListing(directory.fileid)
            let after = try self.attributesNow(directory, upper: parent)
            return ChangeResult(
                handle: self.handle(linked), attributes: self.attributes(try self.reresolve(linked)),
                directory: BeforeAfter(before: before, after: after))
        }
    }

    /// Where batches fsync each changed object: what the unlink of an upper object with stat `st` changed besides its
    /// directory. The last link of an inode without data blocks (an empty file, a fast symlink, a device node) needs
    /// nothing more: its inode is freed in memory, and after a power cut the file system check clears the unattached
    /// inode still marked in use on disk. Otherwise the batch syncs the whole file system: the inode's link count
    /// changed (a surviving hard link), or its data blocks were freed, and a new file could take them while the disk
    /// still gives them to the removed inode (blocks claimed twice, which the file system check does not repair by
    /// itself).
    func changedByUnlink(_ st: stat, path: String) {
        guard self.syncsEachObject else { return }
        if st.isDirectory || st.st_nlink > 1 || st.st_blocks > 0 { self.changed(.filesystem(path: path)) }
    }

    /// protected_hardlinks: linking someone else's file needs read and write permission on it, and not a set-id one.
    func requireLinkable(_ target: Node, _ cred: Credentials) throws(UnionError) {
        let tst = target.dataStat
        if !cred.isRoot && cred.uid != tst.st_uid {
            let setid =
                UInt32(tst.st_mode) & UInt32(S_ISUID) != 0
                || UInt32(tst.st_mode) & (UInt32(S_ISGID) | 0o010) == UInt32(S_ISGID) | 0o010
            guard tst.isRegular, !setid, Permission.allows(tst, cred, Permission.read | Permission.write) else {
                throw .notPermitted
            }
        }
    }
}
