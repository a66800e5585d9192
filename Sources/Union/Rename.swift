import Glibc

// RENAME (Docs/SEMANTICS.md). A directory that exists below is renamed without copying its tree and without EXDEV: its
// upper directory (copied up alone if needed) records a redirect to where its lower content is, so its descendants
// keep their fileids. Crash order (Docs/CRASH-ORDER.md): (1) copy-ups (a file's data without the namespace lock);
// (2) the whiteout of the old name, the redirect, the opaque marker, durable before the rename when there are any
// (the old upper entry still beats the whiteout; the redirect points where the directory already merges from);
// (3) rename(2) in the upper layer, the atomic step; (4) queued for the group commit: the identity's new name (open
// repairs it from tree/ if a crash loses it), records of a replaced directory, and, in a later batch once the new
// entry is durable, dropping a whiteout on the new name (the real entry already beats it).

extension UnionNamespace {
    /// Whether `ancestor` is `dir` or one of its ancestors (by the identity chain).
    func isAncestor(_ ancestor: UInt64, of dir: UInt64) -> Bool {
        var current = dir
        var steps = 0
        while steps < 4096 {
            if current == ancestor { return true }
            if current == self.rootFileid { return false }
            guard let identity = self.identities.identity(current) else { return false }
            current = identity.parent
            steps += 1
        }
        return false
    }

    /// RENAME. File over file replaces; directory over a (merged-)empty directory replaces; directory over a
    /// non-directory is `.notDirectory`; non-directory over a directory is `.isDirectory`; a directory into its own
    /// subtree is `.invalid`.
    public func rename(
        from: ObjectHandle, _ fromName: [UInt8], to: ObjectHandle, _ toName: [UInt8],
        as cred: Credentials
    ) throws(UnionError) {
        _ = try self.renameChange(from: from, fromName, to: to, toName, as: cred)
    }

    /// RENAME with both directories' attributes before and after, taken with the change.
    public func renameChange(
        from: ObjectHandle, _ fromName: [UInt8], to: ObjectHandle, _ toName: [UInt8],
        as cred: Credentials
    ) throws(UnionError) -> ChangeResult {
        try Names.validate(fromName)
        try Names.validate(toName)
        _ = try self.requireUpper()
        // A lower file's data is copied up before the change, without the namespace write lock.
        let source = try? self.namespaceLock.withReadLock { () throws(UnionError) -> Node? in
            try self.child(of: try self.resolveDirectory(from), fromName)
        }
        if let src = source, !src.isDirectory, !self.isUpper(src.top) {
            try self.copyUpOutsideChange(self.handle(src)) { (node) throws(UnionError) -> Bool in
                node.fileid == src.fileid && !node.isDirectory
            }
        }
        return try self.mutate { () throws(UnionError) -> ChangeResult in
            let fd = try self.resolveDirectory(from)
            let td = try self.resolveDirectory(to)
            let fromBefore = self.attributes(fd)
            let toBefore = self.attributes(td)
            try Permission.require(fd.top.st, cred, Permission.write | Permission.exec)
            try Permission.require(td.top.st, cred, Permission.write | Permission.exec)
            guard let src = try self.child(of: fd, fromName) else { throw .noEntry }
            try self.requireDeletable(fd, src, cred)
            let dst = try self.child(of: td, toName)
            if let dst, dst.fileid == src.fileid {  // POSIX: the same file, nothing to do
                let same = BeforeAfter(before: fromBefore, after: fromBefore)
                return ChangeResult(directory: same, toDirectory: BeforeAfter(before: toBefore, after: toBefore))
            }
            if src.isDirectory {
                if self.isAncestor(src.fileid, of: td.fileid) { throw .invalid("cannot move a directory into itself") }
                if fd.fileid != td.fileid { try Permission.require(src.top.st, cred, Permission.write) }  // ".."
                if let dst {
                    guard dst.isDirectory else { throw .notDirectory }
                    guard try self.mergedNames(dst).isEmpty else { throw .notEmpty }
                }
            } else if let dst, dst.isDirectory {
                throw .isDirectory
            }
            if let dst { try self.requireDeletable(td, dst, cred) }

            // Step 1: both parents and the source in the upper layer.
            let srcBelow = try self.existsBelow(fd, fromName)
            let dstBelow = try self.existsBelow(td, toName)
            _ = try self.upperDirectory(fd.fileid)
            let moved = try self.ensureUpper(src)
            let fromUpper = try self.upperDirectory(fd.fileid)
            let toUpper = try self.upperDirectory(td.fileid)
            guard let fromFD = fromUpper.dir, let toFD = toUpper.dir else { throw .notDirectory }
            let dstInUpper: Location? = try {
                () throws(UnionError) -> Location? in
                guard let st = try Files.statAt(toFD, toName, path: toName.displayString) else { return nil }
                return Location(
                    layer: 0, path: Names.join(toUpper.path, toName), parent: toFD, name: toName, dir: nil, st: st)
            }()

            try self.crashPoint("rename.afterCopyUp")
            // Step 2: whiteout of the old name, redirect / opaque of a moved directory: durable before the rename.
            var change = RecordChange()
            if srcBelow { change.addWhiteouts.append((fromUpper.ino, fromName)) }
            if moved.isDirectory && self.redirect(moved.top) == nil {
                let hasLower = moved.dirs.contains { !self.isUpper($0) }
                if hasLower {
                    change.setRedirects.append((moved.top.ino, Names.joinAll(moved.lowerPath)))
                } else if dstBelow {
                    change.addOpaque.append(moved.top.ino)
                }
            }
            if !change.isEmpty { try self.durable(try self.commit(change, "prepare rename")) }
            self.evictNode(
                src.fileid, isDirectory: moved.isDirectory || !change.setRedirects.isEmpty || !change.addOpaque.isEmpty)
            if let dst { self.evictNode(dst.fileid, isDirectory: dst.isDirectory) }

            try self.crashPoint("rename.afterPrepare")
            // Step 3: the rename itself.
            let path = Names.join(toUpper.path, toName).displayString
            _ = try fromName.withCName { (cFrom) throws(UnionError) -> CInt in
                try toName.withCName { (cTo) throws(UnionError) -> CInt in
                    try Sys.retry("renameat", path) { renameat(fromFD.raw, cFrom, toFD.raw, cTo) }
                }
            }
            if fromUpper.ino != toUpper.ino { self.changed(.directory(fromFD, path: fromUpper.path.displayString)) }
            self.changed(.directory(toFD, path: toUpper.path.displayString))
            if self.syncsEachObject {
                // A directory moved to another parent: its ".." entry changed.
                if moved.isDirectory, fromUpper.ino != toUpper.ino {
                    self.changed(.file(try Files.openAt(toFD, toName, O_RDONLY | O_DIRECTORY, path: path), path: path))
                }
                if let old = dstInUpper { self.changedByUnlink(old.st, path: path) }
            }

            try self.crashPoint("rename.afterRename")
            // Step 4: records that follow the rename (the identity's new name first: open repairs it from tree/ if a
            // crash loses it), and, once the new entry is durable, the whiteout under it dropped.
            self.identities.moved(
                src.fileid, from: LinkName(parent: fd.fileid, name: fromName),
                to: LinkName(parent: td.fileid, name: toName))
            var after = RecordChange()
            if let old = dstInUpper, old.st.isDirectory { after.clearDirectories = [old.ino] }
            // A replaced lower hard link no longer shows its object (a crash before this commit: nlink one too high).
            if let dst, self.isCountedLowerName(dst) { after.lowerNamesGone = [dst.fileid] }
            try self.commit(after, "finish rename")
            if self.upperRecords.withLock({ $0.isWhiteout(dirIno: toUpper.ino, toName) }) {
                var drop = RecordChange()
                drop.dropWhiteouts = [(toUpper.ino, toName)]
                try self.commit(drop, "drop whiteout under renamed entry", afterSync: true)
            }
            if let dst {
                if self.isLastLink(dst) {
                    self.identities.forget(dst.fileid)
                } else {
                    self.identities.removedName(dst.fileid, LinkName(parent: td.fileid, name: toName))
                }
            }
            self.invalidateListing(fd.fileid, td.fileid)
            if let dst { self.invalidateListing(dst.fileid) }
            let fromAfter = try self.attributesNow(fd, upper: fromUpper)
            let toAfter = fromUpper.ino == toUpper.ino ? fromAfter : try self.attributesNow(td, upper: toUpper)
            return ChangeResult(
                directory: BeforeAfter(before: fromBefore, after: fromAfter),
                toDirectory: BeforeAfter(before: toBefore, after: toAfter))
        }
    }
}
