import Basics
import Glibc

// WRITE, SETATTR, COMMIT-related: changes to an object's data or metadata copy it up first.

extension UnionNamespace {
    /// Writes need write permission; the owner may always write (knfsd's owner override, see `read`).
    func requireWrite(_ st: stat, _ cred: Credentials) throws(UnionError) {
        if cred.uid == st.st_uid && !cred.isRoot { return }
        try Permission.require(st, cred, Permission.write)
    }

    /// The node in the upper layer, copied up (with its parents) if needed. Caller holds the write lock.
    func ensureUpper(_ n: Node, dataLimit: UInt64? = nil) throws(UnionError) -> Node {
        if self.isUpper(n.top) { return n }
        let parent = try self.upperDirectory(n.parentFileid)
        let fresh = try self.reresolve(n)
        if self.isUpper(fresh.top) { return fresh }  // raced with another copy-up: nothing to do, then
        return try self.copyUp(fresh, into: parent, dataLimit: dataLimit)
    }

    /// A write by a non-root caller clears set-user-id, and set-group-id when group-executable (as the kernel does
    /// without CAP_FSETID; the server runs as root, so this is done by hand).
    func killSetID(_ loc: Location, _ cred: Credentials) throws(UnionError) {
        guard !cred.isRoot, let parent = loc.parent else { return }
        let mode = UInt32(loc.st.st_mode)
        var newMode = mode & 0o7777
        if mode & UInt32(S_ISUID) != 0 { newMode &= ~UInt32(S_ISUID) }
        if mode & UInt32(S_ISGID) != 0 && mode & 0o010 != 0 { newMode &= ~UInt32(S_ISGID) }
        guard newMode != mode & 0o7777 else { return }
        _ = try loc.name.withCName { (cName) throws(UnionError) -> CInt in
            try Sys.retry("fchmodat", loc.pathString) { fchmodat(parent.raw, cName, mode_t(newMode), 0) }
        }
    }

    /// WRITE. `stable` is honoured: `.fileSync` / `.dataSync` make the data durable before returning (an fsync
    /// shared with concurrent WRITEs and COMMITs of the same file, taken after the namespace lock is released);
    /// `committed` says what was done. A file only in a lower layer is copied up first (exactly once for concurrent
    /// writers, without the namespace write lock for the data copy).
    public func write(
        _ h: ObjectHandle, offset: UInt64, data: UnsafeRawBufferPointer, stable: StableHow,
        as cred: Credentials
    ) throws(UnionError) -> (count: Int, committed: StableHow) {
        let upper = try self.requireUpper()
        guard offset <= UInt64(Int64.max) - UInt64(data.count) else { throw .fileTooLarge }
        typealias Written = (count: Int, fd: FD, fileid: UInt64, path: String)
        func doWrite(_ n: Node) throws(UnionError) -> Written {
            let fd = try self.openData(n.top, O_WRONLY)
            // Once every change below is made (data, size, times, set-id bits): listings' kept attributes go.
            defer { self.attributeGeneration.add(1, ordering: .releasing) }
            var done = 0
            try upper.fileWrites.writing(n.fileid) { () throws(UnionError) in
                while done < data.count {
                    let written = try Sys.retry("pwrite", n.top.pathString) {
                        pwrite(fd.raw, data.baseAddress! + done, data.count - done, off_t(offset) + off_t(done))
                    }
                    done += written
                }
            }
            try self.killSetID(n.top, cred)
            return (done, fd, n.fileid, n.top.pathString)
        }
        func check(_ n: Node) throws(UnionError) {
            if n.isDirectory { throw .isDirectory }
            guard n.type == .regular else { throw .invalid("not a regular file") }
            try self.requireWrite(n.dataStat, cred)
        }
        func fastPath() throws(UnionError) -> Written? {
            try self.namespaceLock.withReadLock { () throws(UnionError) -> Written? in
                let node = try self.resolve(h)
                try check(node)
                guard self.isUpper(node.top) else { return nil }
                return try doWrite(node)
            }
        }
        func finish(_ written: Written) throws(UnionError) -> (count: Int, committed: StableHow) {
            if stable != .unstable {
                // FILE_SYNC covers DATA_SYNC: one shared fsync serves both.
                try BlockingWaits.run { () throws(UnionError) in
                    try upper.fileSyncs.sync(written.fileid) { () throws(UnionError) in
                        _ = try Sys.retry("fsync", written.path) { fsync(written.fd.raw) }
                    }
                }
            }
            return (written.count, stable)
        }
        if let done = try fastPath() { return try finish(done) }
        for _ in 0..<3 {
            try self.copyUpForWrite(h, check: check)
            if let done = try fastPath() { return try finish(done) }
        }
        // Lost every race to a change of the same name: copy up and write in one change.
        let done = try self.mutate { () throws(UnionError) -> Written in
            let node = try self.resolve(h)
            try check(node)
            return try doWrite(try self.ensureUpper(node))
        }
        return try finish(done)
    }

    /// COMMIT: an fsync of the upper file, shared with concurrent COMMITs and stable WRITEs of the same file (objects
    /// only in a lower layer have nothing unstable).
    func commitData(_ h: ObjectHandle) throws(UnionError) {
        guard let upper = self.upper else { return }
        let open = try self.namespaceLock.withReadLock { () throws(UnionError) -> (FD, UInt64, String)? in
            let node = try self.resolve(h)
            guard self.isUpper(node.top), node.type == .regular else { return nil }
            return (try self.openData(node.top, O_RDONLY), node.fileid, node.top.pathString)
        }
        guard let (fd, fileid, path) = open else { return }
        try BlockingWaits.run { () throws(UnionError) in
            try upper.fileSyncs.sync(fileid) { () throws(UnionError) in
                _ = try Sys.retry("fsync", path) { fsync(fd.raw) }
            }
        }
    }

    /// SETATTR with the kernel's rules: only the owner (or root) changes the mode; only root changes the owner; the
    /// owner may change the group to one it is in; a size change needs write permission; explicit times need the
    /// owner, "now" also write permission. `guardCtime` is the NFS sattrguard3.
    public func setattr(
        _ h: ObjectHandle, _ changes: SetAttributes, guardCtime: Timespec?,
        as cred: Credentials
    ) throws(UnionError) -> Attributes {
        try self.setattrChange(h, changes, guardCtime: guardCtime, as: cred).attributes!
    }

    /// SETATTR with the object's attributes before and after, taken with the change. A lower file's data is copied
    /// up first without the namespace write lock.
    public func setattrChange(
        _ h: ObjectHandle, _ changes: SetAttributes, guardCtime: Timespec?,
        as cred: Credentials
    ) throws(UnionError) -> ChangeResult {
        if changes.isEmpty {
            return try self.namespaceLock.withReadLock { () throws(UnionError) -> ChangeResult in
                let node = try self.resolve(h)
                let current = self.attributes(node)
                if let expected = guardCtime, current.ctime != expected { throw .guardMismatch }
                return ChangeResult(
                    handle: h, attributes: current, object: BeforeAfter(before: current, after: current))
            }
        }
        _ = try self.requireUpper()
        try self.copyUpOutsideChange(h, dataLimit: changes.size) { (node) throws(UnionError) -> Bool in
            // Only what the change would do anyway: a refused SETATTR copies nothing.
            guard !node.isDirectory else { return false }
            if let expected = guardCtime, self.attributes(node).ctime != expected { return false }
            do {
                _ = try self.checkSetattr(node, changes, as: cred)
                return true
            } catch {
                return false
            }
        }
        return try self.mutate { () throws(UnionError) -> ChangeResult in
            let node = try self.resolve(h)
            let before = self.attributes(node)
            let after = self.attributes(try self.setattrLocked(node, changes, guardCtime: guardCtime, as: cred))
            return ChangeResult(handle: h, attributes: after, object: BeforeAfter(before: before, after: after))
        }
    }

    /// The permission rules of SETATTR (see `setattr`); returns the mode to set.
    func checkSetattr(_ n0: Node, _ changes: SetAttributes, as cred: Credentials) throws(UnionError) -> UInt32? {
        let st = n0.dataStat
        let isOwner = cred.isRoot || cred.uid == st.st_uid
        var mode = changes.mode.map { $0 & 0o7777 }
        if mode != nil {
            guard isOwner else { throw .notPermitted }
            let gid = changes.gid ?? st.st_gid
            if !cred.isRoot && !cred.isInGroup(gid), let requested = mode { mode = requested & ~UInt32(S_ISGID) }
        }
        if let uid = changes.uid, !Permission.mayChown(st, cred, to: uid) { throw .notPermitted }
        if let gid = changes.gid, !Permission.mayChgrp(st, cred, to: gid) { throw .notPermitted }
        if changes.size != nil {
            if n0.isDirectory { throw .isDirectory }
            guard n0.type == .regular else { throw .invalid("size of a non-regular file") }
            try self.requireWrite(st, cred)
        }
        for time in [changes.atime, changes.mtime] {
            switch time {
            case nil: break
            case .serverTime: if !isOwner { try Permission.require(st, cred, Permission.write) }
            case .clientTime: if !isOwner { throw .notPermitted }
            }
        }
        return mode
    }

    func setattrLocked(
        _ n0: Node, _ changes: SetAttributes, guardCtime: Timespec?, as cred: Credentials
    )
        throws(UnionError) -> Node
    {
        if let expected = guardCtime, self.attributes(n0).ctime != expected { throw .guardMismatch }
        let mode = try self.checkSetattr(n0, changes, as: cred)
        let st = n0.dataStat
        let node = try self.ensureUpper(n0, dataLimit: changes.size)
        let loc = node.top
        let path = loc.pathString
        // A directory's own descriptor (the root has no parent in its layer) or parent + name.
        let (dirFD, name): (FD, [UInt8]) = {
            if let parent = loc.parent { return (parent, loc.name) }
            return (loc.dir ?? self.layers[0].tree, Array(".".utf8))
        }()
        try name.withCName { (cName) throws(UnionError) in
            if changes.uid != nil || changes.gid != nil {
                let uid = changes.uid ?? UInt32.max, gid = changes.gid ?? UInt32.max  // -1: unchanged
                _ = try Sys.retry("fchownat", path) { fchownat(dirFD.raw, cName, uid, gid, AT_SYMLINK_NOFOLLOW) }
                if mode == nil, node.type != .symlink, Permission.chownDropsSetgid(st, cred) {
                    let cleared = mode_t(UInt32(st.st_mode) & 0o7777 & ~UInt32(S_ISGID))
                    _ = try Sys.retry("fchmodat", path) { fchmodat(dirFD.raw, cName, cleared, 0) }
                }
            }
            if let newMode = mode, node.type != .symlink {
                _ = try Sys.retry("fchmodat", path) { fchmodat(dirFD.raw, cName, mode_t(newMode), 0) }
            }
        }
        if let size = changes.size {
            guard size <= UInt64(Int64.max) else { throw .fileTooLarge }
            let fd = try self.openData(loc, O_WRONLY)
            _ = try Sys.retry("ftruncate", path) { ftruncate(fd.raw, off_t(size)) }
            if mode == nil, let fresh = try Files.statAt(dirFD, name, path: path) {
                var updated = loc
                updated.st = fresh
                try self.killSetID(updated, cred)
            }
        }
        try self.applyTimes(dirFD, name, changes, path: path)
        // What the batch syncs: the object itself where it can be opened, else its directory.
        if node.type == .regular {
            self.changed(.file(try self.openData(loc, O_RDONLY), path: path))
        } else if node.isDirectory, let ownFD = loc.dir {
            self.changed(.directory(ownFD, path: path))
        } else if self.syncsEachObject {
            self.changed(.filesystem(path: path))  // a symlink or device node: no descriptor to fsync
        } else {
            self.changed(.directory(dirFD, path: path))
        }
        return try self.reresolve(node)
    }
}

extension UnionNamespace {
    /// Sets atime/mtime of `name` in `dir` as asked (server time, client time, or left alone): SETATTR, and CREATE
    /// for the times it was given.
    func applyTimes(_ dir: FD, _ name: [UInt8], _ a: SetAttributes, path: String) throws(UnionError) {
        guard var times = Self.timespecs(a) else { return }
        _ = try name.withCName { (cName) throws(UnionError) -> CInt in
            try Sys.retry("utimensat", path) { utimensat(dir.raw, cName, &times, AT_SYMLINK_NOFOLLOW) }
        }
    }

    /// The access and modification times `a` sets, for utimensat/futimens; nil when it sets neither.
    static func timespecs(_ a: SetAttributes) -> [timespec]? {
        guard a.atime != nil || a.mtime != nil else { return nil }
        func ts(_ change: TimeChange?) -> timespec {
            switch change {
            case nil: return timespec(tv_sec: 0, tv_nsec: Sys.UTIME_OMIT)
            case .serverTime: return timespec(tv_sec: 0, tv_nsec: Sys.UTIME_NOW)
            case .clientTime(let time):
                return timespec(tv_sec: Int(time.seconds), tv_nsec: Int(min(time.nanoseconds, 999_999_999)))
            }
        }
        return [ts(a.atime), ts(a.mtime)]
    }
}
