import Glibc

// Copy-up (Docs/SEMANTICS.md, overlayfs copy_up.c): parents first, with their lower metadata; then the object, written
// under work/, fsynced and renamed into place, so a client never sees a half-copied file. This file is the policy and
// the crash order; how an object, its metadata and its data (holes kept) are copied is `FileCopy`. A regular file's
// data is copied without any namespace lock (`copyUpOutsideChange`): other calls, of this namespace and others, go on
// meanwhile; only the publishing rename takes the write lock.

extension UnionNamespace {
    func workName(_ what: String) -> [UInt8] { WorkNames.next(what) }

    /// The directory `fileid` in the upper layer (copied up with its parents if needed): its O_PATH descriptor and stat.
    /// Caller holds the namespace write lock.
    func upperDirectory(_ fileid: UInt64) throws(UnionError) -> Location {
        let node = try self.resolve(self.handle(fileid: fileid))
        guard node.isDirectory else { throw .notDirectory }
        if self.isUpper(node.top) { return node.top }
        let parent = try self.upperDirectory(node.parentFileid)
        return try self.copyUp(node, into: parent).top
    }

    /// Brings `node` (not yet in the upper layer) into the upper directory `parent` at its own name; returns the node
    /// as resolved afterwards. Caller holds the namespace write lock and has checked `parent` is its parent.
    @discardableResult
    func copyUp(_ node: Node, into parent: Location, dataLimit: UInt64? = nil) throws(UnionError) -> Node {
        let upper = try self.requireUpper()
        guard let parentFD = parent.dir else { throw .notDirectory }
        let path = Names.join(parent.path, node.name).displayString
        if let indexed = node.indexed {
            // Another name of a hard-linked lower inode that was copied up: link the upper copy in.
            _ = try indexed.name.withCName { (indexName) throws(UnionError) -> CInt in
                try node.name.withCName { (name) throws(UnionError) -> CInt in
                    try Sys.retry("linkat", path) { linkat(upper.index.raw, indexName, parentFD.raw, name, 0) }
                }
            }
            self.changed(.directory(parentFD, path: parent.pathString))
            if self.syncsEachObject { self.changed(.filesystem(path: path)) }  // the inode's link count
            self.evictNode(node.fileid, isDirectory: false)
            self.invalidateListing(node.parentFileid)  // the listing found the name in a lower layer
            // The lower name is an upper link now (a crash before this commit: nlink one too high, never too low).
            self.identities.lowerNameGone(node.fileid)
            return try self.reresolve(node)
        }
        return try self.publishCopy(node, try self.prepareCopy(node, dataLimit: dataLimit), into: parent)
    }

    /// A copy made under work/, not yet published.
    struct PreparedCopy {
        var tmp: [UInt8]
        var tmpSt: stat
    }

    /// Step 1 of a copy-up: the copy under work/ (data, owner, mode, times, xattrs; a file's fsynced). It touches nothing
    /// clients can see, so it may run under the read lock. A crash leaves a work/ leftover, removed on the next open.
    func prepareCopy(_ node: Node, dataLimit: UInt64?) throws(UnionError) -> PreparedCopy {
        let upper = try self.requireUpper()
        let tmp = self.workName("copyup")
        let tmpPath = "work/" + tmp.displayString
        return try self.cleaningWork(tmp) { () throws(UnionError) -> PreparedCopy in
            // A directory's copy has no data to make durable first: like a new MKDIR's, its inode is made durable by
            // the batch that covers the change it was copied up for (the copy's own fsync where each object is
            // fsynced), before any reply.
            try FileCopy.copyObject(
                node.top, as: tmp, in: upper.work, path: tmpPath, dataLimit: dataLimit,
                sync: !node.top.st.isDirectory)
            guard let tmpSt = try Files.statAt(upper.work, tmp, path: tmpPath) else {
                throw .io(errno: ENOENT, call: "fstatat", path: tmpPath)
            }
            return PreparedCopy(tmp: tmp, tmpSt: tmpSt)
        }
    }

    func discard(_ copy: PreparedCopy) {
        guard let upper = self.upper else { return }
        try? Files.removeTree(upper.work, copy.tmp, path: "work/" + copy.tmp.displayString)
    }

    /// Steps 2 and 3 of a copy-up, under the write lock: record the identity, then rename the copy into place.
    func publishCopy(_ node: Node, _ copy: PreparedCopy, into parent: Location) throws(UnionError) -> Node {
        let upper = try self.requireUpper()
        guard let parentFD = parent.dir else { throw .notDirectory }
        let path = Names.join(parent.path, node.name).displayString
        let st = node.top.st
        let tmp = copy.tmp
        let tmpSt = copy.tmpSt
        let wasCountedLowerName = self.isCountedLowerName(node)
        try self.cleaningWork(tmp) { () throws(UnionError) in
            let isIndexed = st.isRegular && st.st_nlink > 1
            if isIndexed {
                // Keep the copy reachable for the other names of the lower inode (overlayfs index=on).
                let indexName = Array(String(node.fileid).utf8)
                let indexPath = "index/\(node.fileid)"
                // A leftover of a copy-up that crashed before its publish: this copy replaces it.
                _ = try indexName.withCName { (name) throws(UnionError) -> CInt? in
                    try Sys.retryOrMissing("unlinkat", indexPath) { unlinkat(upper.index.raw, name, 0) }
                }
                _ = try tmp.withCName { (tmpName) throws(UnionError) -> CInt in
                    try indexName.withCName { (name) throws(UnionError) -> CInt in
                        try Sys.retry("linkat", indexPath) { linkat(upper.work.raw, tmpName, upper.index.raw, name, 0) }
                    }
                }
                self.changed(.directory(upper.index, path: "index"))
                if self.syncsEachObject { self.changed(.filesystem(path: indexPath)) }  // the inode's link count
            }
            try self.crashPoint("copyUp.afterCopy")
            // Step 2: the identity points at the copy (a crash now: open clears it, the lower object is still shown).
            // For a file it must be durable before the rename publishes the copy: the one flush waited for under the
            // lock. A directory needs no wait: published without its row, it still merges the lower directory it was
            // copied from and takes that one's identity (`mergedLowerWithoutRow`), unless records of a removed
            // directory that had its inode number must be cleared first (they would apply to the copy).
            let copyIno = UInt64(tmpSt.st_ino)
            let clearsRecords =
                st.isDirectory
                && self.upperRecords.withLock {
                    $0.whiteouts[copyIno] != nil || $0.opaque.contains(copyIno) || $0.redirects[copyIno] != nil
                }
            if st.isDirectory { try self.clearDirectoryRecords([copyIno]) }
            let seq = self.identities.setUpper(
                node.fileid, upperIno: copyIno, isIndexed: isIndexed,
                lowerLinkCount: UInt32(truncatingIfNeeded: st.st_nlink))
            if !st.isDirectory || clearsRecords { try self.durable(seq) }
            try self.crashPoint("copyUp.afterRecord")
            // Step 3: publish. A crash after it: the copy is the object.
            try Files.renameNoReplace(upper.work, tmp, parentFD, node.name, path: path)
            self.evictNode(node.fileid, isDirectory: st.isDirectory)
            // The cached listing found the name in a lower layer: its pages would stat the lower object.
            self.invalidateListing(node.parentFileid)
            try self.restoreTimes(parent)
            self.changed(.directory(parentFD, path: parent.pathString))
            if self.syncsEachObject {
                // A file's copy was fsynced before its rename; a directory's is fsynced here (its inode, and its ".."
                // changed with the rename); a symlink or device node cannot be.
                if tmpSt.isDirectory {
                    self.changed(
                        .file(try Files.openAt(parentFD, node.name, O_RDONLY | O_DIRECTORY, path: path), path: path))
                } else if !tmpSt.isRegular {
                    self.changed(.filesystem(path: path))
                }
            }
        }
        self.hooks?.copyUpCount.add(1, ordering: .relaxed)
        self.stats.copiedUp(bytes: tmpSt.isRegular ? UInt64(clamping: tmpSt.st_size) : 0)
        // The copied name is an upper link now; its lower inode's other names still count (see `linkCount`).
        if wasCountedLowerName { self.identities.lowerNameGone(node.fileid) }
        try self.crashPoint("copyUp.afterPublish")
        self.logger.debug("copied up", metadata: ["layer": "\(upper.directory)", "path": "\(path)"])
        return try self.reresolve(node)
    }

    /// Copy-up for WRITE: see `copyUpOutsideChange`.
    func copyUpForWrite(_ handle: ObjectHandle, check: (Node) throws(UnionError) -> Void) throws(UnionError) {
        try self.copyUpOutsideChange(handle) { (node) throws(UnionError) -> Bool in
            try check(node)
            return true
        }
    }

    /// Copies a lower object up before the change that needs it (WRITE, SETATTR, LINK, RENAME), without holding the
    /// namespace lock for the data copy: (A) under the write lock, parents are copied up and the object re-checked;
    /// (B) with no namespace lock at all, the data is copied into work/ (other calls, and other namespaces sharing
    /// the thread pool, go on); (C) under the write lock, the name is re-checked (still the same lower object, not
    /// yet copied up) and the copy published, or discarded when something changed meanwhile (the change then copies
    /// up itself, under its lock). A per-object lock around A–C makes concurrent writers of one file copy it once
    /// ("Raced with another copy-up? Nothing to do"). `shouldCopy` false: leave it to the change (it will fail).
    func copyUpOutsideChange(
        _ handle: ObjectHandle, dataLimit: UInt64? = nil, shouldCopy: (Node) throws(UnionError) -> Bool
    ) throws(UnionError) {
        let stripe = self.copyUpLocks[Int(handle.fileid % UInt64(self.copyUpLocks.count))]
        try stripe.lock.withLock { (_) throws(UnionError) in
            // Cheap first look under the read lock: most calls find the object in the upper layer already.
            let needed = try self.namespaceLock.withReadLock { () throws(UnionError) -> Bool in
                let node = try self.resolve(handle)
                return !self.isUpper(node.top)
            }
            guard needed else { return }
            let pending = try self.mutate { () throws(UnionError) -> Node? in
                let node = try self.resolve(handle)
                guard try shouldCopy(node) else { return nil }
                if self.isUpper(node.top) { return nil }
                let parent = try self.upperDirectory(node.parentFileid)
                let fresh = try self.reresolve(node)
                if self.isUpper(fresh.top) { return nil }
                if fresh.indexed != nil || !fresh.top.st.isRegular {
                    _ = try self.copyUp(fresh, into: parent)  // no data to copy: publish right away
                    return nil
                }
                return fresh
            }
            guard let node = pending else { return }
            let copy = try self.prepareCopyUnlocked(node, dataLimit: dataLimit)
            try self.mutate { () throws(UnionError) in
                guard let fresh = try? self.reresolve(node), fresh.fileid == node.fileid, !self.isUpper(fresh.top),
                    fresh.indexed == nil, fresh.top.ino == node.top.ino
                else {
                    self.discard(copy)
                    return
                }
                let parent = try self.upperDirectory(fresh.parentFileid)
                _ = try self.publishCopy(fresh, copy, into: parent)
            }
        }
    }

    /// Step 1 of a copy-up of a regular file without the namespace lock: the source is opened and the destination
    /// made in work/ under the read lock (the layer's descriptors stay open meanwhile); data, xattrs, owner, mode and
    /// times are then copied through the two descriptors, and the copy fsynced, with no lock held.
    func prepareCopyUnlocked(_ node: Node, dataLimit: UInt64?) throws(UnionError) -> PreparedCopy {
        let tmp = self.workName("copyup")
        let tmpPath = "work/" + tmp.displayString
        let srcPath = node.top.pathString
        let (source, copy) = try self.namespaceLock.withReadLock { () throws(UnionError) -> (FD, FD) in
            if self.isClosed.load(ordering: .relaxed) { throw .stale }
            let upper = try self.requireUpper()
            guard let sourceParent = node.top.parent else { throw .isDirectory }
            let source = try Files.openAt(sourceParent, node.top.name, O_RDONLY, path: srcPath)
            let copy = try Files.openAt(upper.work, tmp, O_CREAT | O_EXCL | O_WRONLY, mode: 0o600, path: tmpPath)
            return (source, copy)
        }
        do throws(UnionError) {
            let st = node.top.st
            let size = min(Int64(st.st_size), Int64(clamping: dataLimit ?? UInt64(Int64.max)))
            try FileCopy.copyData(from: source, to: copy, size: size, path: srcPath)
            try FileCopy.copyXattrs(from: source, to: copy)
            _ = try Sys.retry("fchown", tmpPath) { fchown(copy.raw, st.st_uid, st.st_gid) }
            _ = try Sys.retry("fchmod", tmpPath) { fchmod(copy.raw, mode_t(st.permissionBits)) }
            var times = [st.st_atim, st.st_mtim]
            _ = try Sys.retry("futimens", tmpPath) { futimens(copy.raw, &times) }
            if let hook = self.hooks?.whileCopying.current { hook() }
            _ = try Sys.retry("fsync", tmpPath) { fsync(copy.raw) }
            let tmpSt = try Files.fstat(copy, path: tmpPath)
            return PreparedCopy(tmp: tmp, tmpSt: tmpSt)
        } catch {
            self.attributeGeneration.add(1, ordering: .releasing)  // reading the source may have moved its atime
            self.namespaceLock.withReadLock {
                if !self.isClosed.load(ordering: .relaxed) { self.discard(PreparedCopy(tmp: tmp, tmpSt: stat())) }
            }
            throw error
        }
    }

    /// Runs the steps that build `tmp` under work/; on failure the partial entry is removed (and an identity that
    /// already pointed at it falls back to its origin) instead of waiting for the next open.
    func cleaningWork<T>(_ tmp: [UInt8], _ body: () throws(UnionError) -> T) throws(UnionError) -> T {
        do {
            return try body()
        } catch {
            if case .simulatedCrash = error { throw error }  // a simulated crash cleans nothing
            if let upper = self.upper, let st = try? Files.statAt(upper.work, tmp, path: "work") {
                self.identities.clearUpper(inodes: [UInt64(st.st_ino)])
                try? Files.removeTree(upper.work, tmp, path: "work/" + tmp.displayString)
            }
            throw error
        }
    }

    /// A copy-up is not a change of the parent directory: its times are put back after the copy lands in it.
    func restoreTimes(_ dir: Location) throws(UnionError) {
        guard let fd = dir.dir else { return }
        var times = [dir.st.st_atim, dir.st.st_mtim]
        _ = try Sys.retry("utimensat", dir.pathString) { utimensat(fd.raw, "", &times, Sys.AT_EMPTY_PATH) }
    }
}
