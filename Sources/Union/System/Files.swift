import Glibc

// Descriptor-relative file helpers. Every path handed to the kernel here is a single validated name relative to a
// directory descriptor (or "." / ""), opened with O_NOFOLLOW, so no symlink inside a layer is ever followed.

enum Files {
    static func statAt(_ dir: FD, _ name: [UInt8], path: @autoclosure () -> String) throws(UnionError) -> stat? {
        var st = stat()
        let found = try name.withCName { (cName) throws(UnionError) -> CInt? in
            try Sys.retryOrMissing("fstatat", path()) { fstatat(dir.raw, cName, &st, AT_SYMLINK_NOFOLLOW) }
        }
        return found == nil ? nil : st
    }

    static func fstat(_ fd: FD, path: @autoclosure () -> String) throws(UnionError) -> stat {
        var st = stat()
        _ = try Sys.retry("fstat", path()) { Glibc.fstat(fd.raw, &st) }
        return st
    }

    /// Gives the object of `fd` (whose stat is `st`) owner `uid`:`gid` and permission bits `mode`, unless it has them
    /// already: a chown or chmod that changes nothing still dirties the inode (a journal handle each on ext4). chmod
    /// after chown, which clears set-uid and set-gid. Returns whether it changed them.
    @discardableResult
    static func setOwnerAndMode(
        _ fd: FD, from st: stat, uid: UInt32, gid: UInt32, mode: UInt32, path: String
    ) throws(UnionError) -> Bool {
        let bits = mode & 0o7777
        guard st.st_uid != uid || st.st_gid != gid || UInt32(st.st_mode) & 0o7777 != bits else { return false }
        _ = try Sys.retry("fchown", path) { fchown(fd.raw, uid, gid) }
        _ = try Sys.retry("fchmod", path) { fchmod(fd.raw, mode_t(bits)) }
        return true
    }

    /// Opens `name` under `dir` with `flags | O_NOFOLLOW | O_CLOEXEC`.
    static func openAt(
        _ dir: FD, _ name: [UInt8], _ flags: CInt, mode: mode_t = 0, path: @autoclosure () -> String
    )
        throws(UnionError) -> FD
    {
        let fd = try name.withCName { (cName) throws(UnionError) -> CInt in
            try Sys.retry("openat", path()) { openat(dir.raw, cName, flags | O_NOFOLLOW | O_CLOEXEC, mode) }
        }
        return FD(fd)
    }

    /// An O_PATH descriptor of the directory `name` under `dir`; a symlink or non-directory gives `notDirectory`.
    static func openDirPath(_ dir: FD, _ name: [UInt8], path: @autoclosure () -> String) throws(UnionError) -> FD {
        do {
            return try Self.openAt(dir, name, Sys.O_PATH | O_DIRECTORY, path: path())
        } catch .io(errno: ELOOP, _, _) {
            throw .notDirectory
        }
    }

    /// A readable descriptor of the directory `dir` itself (for getdents, fsync, xattrs).
    static func reopenDirectory(_ dir: FD, path: @autoclosure () -> String) throws(UnionError) -> FD {
        try Self.openAt(dir, Array(".".utf8), O_RDONLY | O_DIRECTORY, path: path())
    }

    struct DirEntry {
        var name: [UInt8]
        var ino: UInt64
        var type: UInt8
    }

    /// All entries of a directory except `.` and `..`.
    static func list(_ dir: FD, path: @autoclosure () -> String) throws(UnionError) -> [DirEntry] {
        let rfd = try Self.reopenDirectory(dir, path: path())
        let listFD = dup(rfd.raw)
        if listFD < 0 { throw Sys.error(errno, "dup", path()) }
        guard let dirp = fdopendir(listFD) else {
            let code = errno
            Glibc.close(listFD)
            throw Sys.error(code, "fdopendir", path())
        }
        defer { closedir(dirp) }
        var out: [DirEntry] = []
        while true {
            errno = 0
            guard let ent = readdir(dirp) else {
                if errno != 0 { throw Sys.error(errno, "readdir", path()) }
                break
            }
            let name: [UInt8] = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                let length = bytes.firstIndex(of: 0) ?? bytes.count
                return Array(bytes[0..<length])
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            out.append(DirEntry(name: name, ino: UInt64(ent.pointee.d_ino), type: ent.pointee.d_type))
        }
        return out
    }

    /// Renames `from` in `fromDir` to `to` in `toDir` with renameat2 RENAME_NOREPLACE (`.exists` where `to` is taken);
    /// a C library without renameat2 gets a plain renameat.
    static func renameNoReplace(
        _ fromDir: FD, _ from: [UInt8], _ toDir: FD, _ to: [UInt8], path: String
    ) throws(UnionError) {
        _ = try from.withCName { (fromName) throws(UnionError) -> CInt in
            try to.withCName { (toName) throws(UnionError) -> CInt in
                if let renameat2 = Sys.gnu.renameat2 {
                    return try Sys.retry("renameat2", path) {
                        renameat2(fromDir.raw, fromName, toDir.raw, toName, Sys.RENAME_NOREPLACE)
                    }
                }
                return try Sys.retry("renameat", path) { renameat(fromDir.raw, fromName, toDir.raw, toName) }
            }
        }
    }

    static func fsyncDirectory(_ dir: FD, path: @autoclosure () -> String) throws(UnionError) {
        let rfd = try Self.reopenDirectory(dir, path: path())
        _ = try Sys.retry("fsync", path()) { fsync(rfd.raw) }
    }

    /// Removes `name` under `dir`, recursively if it is a directory (`work/` leftovers, a discarded layer), never following a symlink.
    static func removeTree(_ dir: FD, _ name: [UInt8], path: String) throws(UnionError) {
        guard let st = try Self.statAt(dir, name, path: path) else { return }
        if st.isDirectory {
            let sub = try Self.openDirPath(dir, name, path: path)
            for entry in try Self.list(sub, path: path) {
                try Self.removeTree(sub, entry.name, path: path + "/" + entry.name.displayString)
            }
            _ = try name.withCName { (cName) throws(UnionError) -> CInt in
                try Sys.retry("unlinkat", path) { unlinkat(dir.raw, cName, AT_REMOVEDIR) }
            }
        } else {
            _ = try name.withCName { (cName) throws(UnionError) -> CInt in
                try Sys.retry("unlinkat", path) { unlinkat(dir.raw, cName, 0) }
            }
        }
    }

    /// The value of an extended attribute of an open (non-O_PATH) descriptor, or nil.
    static func getXattr(_ fd: FD, _ key: String) -> [UInt8]? {
        guard let fget = Sys.gnu.fgetxattr else { return nil }
        var buf = [UInt8](repeating: 0, count: 256)
        let length = buf.withUnsafeMutableBytes { raw in fget(fd.raw, key, raw.baseAddress, raw.count) }
        guard length >= 0 else { return nil }
        return Array(buf[0..<length])
    }

    /// `mkdir -p`: the directory itself first, its missing parents only when it has some. Every namespace opens its
    /// upper through this (`tree/`, `work/`, `index/`), and a walk from the root was a `mkdir` per component each
    /// time: 21 of a client's first MNT's system calls, all answering EEXIST.
    static func mkdirAll(_ path: String, mode: mode_t = 0o755) throws(UnionError) {
        if mkdir(path, mode) == 0 { return }
        switch errno {
        case EEXIST:
            return
        case ENOENT:
            guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else {
                throw Sys.error(ENOENT, "mkdir", path)
            }
            try Self.mkdirAll(String(path[..<slash]), mode: mode)
            if mkdir(path, mode) != 0 && errno != EEXIST { throw Sys.error(errno, "mkdir", path) }
        case let code:
            throw Sys.error(code, "mkdir", path)
        }
    }

    /// stat(2) of an absolute path (`followingLinks`), else lstat(2): nil where nothing is there (ENOENT, or a
    /// component that is not a directory).
    static func statAbsolute(_ path: String, followingLinks: Bool) throws(UnionError) -> stat? {
        var st = stat()
        while true {
            if fstatat(AT_FDCWD, path, &st, followingLinks ? 0 : AT_SYMLINK_NOFOLLOW) == 0 { return st }
            let code = errno
            if code == EINTR { continue }
            if code == ENOENT || code == ENOTDIR { return nil }
            throw Sys.error(code, "fstatat", path)
        }
    }

    static func openDirectoryAbsolute(_ path: String) throws(UnionError) -> FD {
        let fd = try Sys.retry("open", path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        return FD(fd)
    }
}

extension Files {
    /// How group commits make changes under `tree` durable: one fsync where the file system journals metadata in
    /// order (ext4 with a journal, XFS), nothing on tmpfs (nothing survives a reboot there anyway), `syncfs` elsewhere.
    /// On ext4 without a journal an fsync of each changed object was measured slower than the `syncfs` and costlier in
    /// CPU: each such fsync sends its own disk cache flush, and the order a batch needs (inodes before the names of
    /// them) takes two rounds of them (Docs/CRASH-ORDER.md).
    static func filesystemSync(for tree: FD) -> FilesystemSync {
        guard let type = Self.filesystemType(tree) else { return .wholeFilesystem(tree) }
        switch type {
        case 0x0102_1994:  // TMPFS_MAGIC
            return .none
        case 0x5846_5342:  // XFS_SUPER_MAGIC: always logged
            return .orderedJournal
        case Self.ext4Magic:  // ordered only with a jbd2 journal
            return Self.ext4HasJournal(tree) ? .orderedJournal : .wholeFilesystem(tree)
        default:
            return .wholeFilesystem(tree)
        }
    }

    /// Makes everything written to the file system of `directory` (an open directory, not O_PATH) durable: `syncfs`,
    /// then an fsync of `directory`, whose only work is the disk cache flush that `syncfs` does not end with.
    /// `syncfs` writes back the inodes, has the file system flush the disk's cache (ext4 without a journal does it
    /// here, in `sync_fs`), and only then writes back the block device's metadata buffers (`sync_blockdev`), with no
    /// flush after them. Among those writes: what the same `syncfs` dirtied while writing back data (a grown WAL's
    /// new size and extents), and buffers submitted earlier whose writes the flush did not wait for. Traced on ext4
    /// without a journal: in 45 to 93 % of the batches that grew the WAL, the WAL's inode block was written after the
    /// flush, so a power cut could lose the batch's records while the disk kept its names. ext4 without a journal
    /// issues the flush in every fsync; file systems whose `syncfs` commits a journal find nothing left to do.
    static func syncFilesystem(_ directory: FD, path: String) throws(UnionError) {
        _ = try Sys.retry("syncfs", path) { Sys.syncfs(directory.raw) }
        _ = try Sys.retry("fsync", path) { fsync(directory.raw) }
    }

    /// EXT4_SUPER_MAGIC (also ext2/ext3).
    static let ext4Magic: UInt64 = 0xEF53

    /// `f_type` of the file system `fd` is on (nil if unknown).
    static func filesystemType(_ fd: FD) -> UInt64? {
        guard let fstatfs = Sys.gnu.fstatfs else { return nil }
        // struct statfs starts with `long f_type` on Linux; the rest is not needed.
        var buf = [Int64](repeating: 0, count: 32)
        guard buf.withUnsafeMutableBytes({ fstatfs(fd.raw, $0.baseAddress!) }) == 0 else { return nil }
        return UInt64(bitPattern: buf[0])
    }

    /// Whether the ext4 file system `fd` is on has a jbd2 journal: `/sys/fs/ext4/DEV/journal_task` names its thread,
    /// or says "<none>" (then an fsync covers only its own inode). False when that cannot be read.
    static func ext4HasJournal(_ fd: FD) -> Bool {
        var st = stat()
        guard Glibc.fstat(fd.raw, &st) == 0 else { return false }
        let link = "/sys/dev/block/\(Sys.major(st.st_dev)):\(Sys.minor(st.st_dev))"
        var buf = [CChar](repeating: 0, count: 4096)
        let length = readlink(link, &buf, buf.count - 1)
        guard length > 0 else { return false }
        let target = String(decoding: buf[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let device = target.split(separator: "/").last,
            let journalTask = fopen("/sys/fs/ext4/\(device)/journal_task", "r")
        else { return false }
        defer { fclose(journalTask) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, CInt(line.count), journalTask) != nil else { return false }
        let task = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return !(task.hasPrefix("<none>") || task.isEmpty)
    }

    /// Whether new inodes on `tree`'s file system skip the ones freed in the last minute: ext4 without a journal
    /// (`recently_deleted` in `find_inode_bit`, checked only when there is no journal). There, and only there, spare
    /// inodes pay (`SpareInodes.swift`). `sync` is `filesystemSync(for: tree)`, which on ext4 already read whether
    /// there is a journal: `.wholeFilesystem` there means none (or none known).
    static func skipsRecentlyFreedInodes(_ tree: FD, sync: FilesystemSync) -> Bool {
        guard case .wholeFilesystem = sync else { return false }
        return Self.filesystemType(tree) == Self.ext4Magic
    }
}
