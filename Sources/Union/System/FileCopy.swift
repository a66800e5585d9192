import Glibc

// How one object is copied (copy-up, `strata layer promote`), apart from the policy of what is copied when: the
// object by its type, its owner, mode and times, its extended attributes as overlayfs copies them, and its data. Data
// keeps its holes: FICLONE where the file system can share extents (overlayfs: "Try to use clone_file_range to clone
// up within the same fs"), else copy_file_range over each data extent found with SEEK_DATA/SEEK_HOLE; a read/write
// loop only where the kernel refuses both.

enum FileCopy {
    /// Creates `name` in `dir` as a copy of `src` (data, owner, mode, times, xattrs) and fsyncs it (unless `sync` is
    /// false: a caller whose later flush covers the copy).
    /// `dataLimit`: copy at most this many bytes (a copy-up for a truncation need not copy what goes away).
    static func copyObject(
        _ src: Location, as name: [UInt8], in dir: FD, path: String, dataLimit: UInt64? = nil, sync: Bool = true
    )
        throws(UnionError)
    {
        let st = src.st
        let srcPath = src.pathString
        var dataFD: FD?
        switch st.fileType {
        case .regular:
            guard let sourceParent = src.parent else { throw .isDirectory }
            let source = try Files.openAt(sourceParent, src.name, O_RDONLY, path: srcPath)
            let copy = try Files.openAt(dir, name, O_CREAT | O_EXCL | O_WRONLY, mode: 0o600, path: path)
            let size = min(Int64(st.st_size), Int64(clamping: dataLimit ?? UInt64(Int64.max)))
            try FileCopy.copyData(from: source, to: copy, size: size, path: srcPath)
            try FileCopy.copyXattrs(from: source, to: copy)
            dataFD = copy
        case .directory:
            _ = try name.withCName { (cName) throws(UnionError) -> CInt in
                try Sys.retry("mkdirat", path) { mkdirat(dir.raw, cName, 0o700) }
            }
            if let sourceDir = src.dir {
                let source = try Files.reopenDirectory(sourceDir, path: srcPath)
                let copy = try Files.openAt(dir, name, O_RDONLY | O_DIRECTORY, path: path)
                try FileCopy.copyXattrs(from: source, to: copy)
                dataFD = copy
            }
        case .symlink:
            guard let parent = src.parent else { throw .invalid("symlink without parent") }
            var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let length = try src.name.withCName { (cName) throws(UnionError) -> Int in
                try Sys.retry("readlinkat", srcPath) { readlinkat(parent.raw, cName, &target, target.count - 1) }
            }
            target[length] = 0
            _ = try name.withCName { (cName) throws(UnionError) -> CInt in
                try Sys.retry("symlinkat", path) { symlinkat(target, dir.raw, cName) }
            }
        default:
            _ = try name.withCName { (cName) throws(UnionError) -> CInt in
                try Sys.retry("mknodat", path) {
                    mknodat(dir.raw, cName, (st.st_mode & S_IFMT) | 0o600, st.st_rdev)
                }
            }
        }
        try Self.setOwnerModeTimes(dir, name, st: st, path: path)
        if sync, let dataFD { _ = try Sys.retry("fsync", path) { fsync(dataFD.raw) } }
    }

    /// Owner first (chown clears set-id bits), then mode, then times (last: the others change ctime only).
    static func setOwnerModeTimes(_ dir: FD, _ name: [UInt8], st: stat, path: String) throws(UnionError) {
        try name.withCName { (cName) throws(UnionError) in
            _ = try Sys.retry("fchownat", path) {
                fchownat(dir.raw, cName, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW)
            }
            if !(st.fileType == .symlink) {
                _ = try Sys.retry("fchmodat", path) { fchmodat(dir.raw, cName, mode_t(st.permissionBits), 0) }
            }
            var times = [st.st_atim, st.st_mtim]
            _ = try Sys.retry("utimensat", path) { utimensat(dir.raw, cName, &times, AT_SYMLINK_NOFOLLOW) }
        }
    }

    /// Copies the first `size` bytes of `source` into the empty file `destination` and makes that its size.
    static func copyData(from source: FD, to destination: FD, size: Int64, path: String) throws(UnionError) {
        if try Sys.cloneFile(from: source, to: destination, path: path) { return }
        var offset: Int64 = 0
        while offset < size {
            let dataStart: Int64
            do {
                guard let found = try Sys.seek(source, offset, Sys.SEEK_DATA, path: path) else { break }  // a hole
                dataStart = found
            } catch .io(let error, _, _) where error == EINVAL || error == EOPNOTSUPP {
                // No SEEK_DATA on this file system: the rest in one range, holes written as zeros.
                try Self.copyRange(source, destination, from: offset, to: size, path: path)
                break
            }
            // No hole after the data (the source shrank meanwhile): up to `size`.
            let holeStart = try Sys.seek(source, dataStart, Sys.SEEK_HOLE, path: path) ?? size
            try Self.copyRange(source, destination, from: dataStart, to: min(holeStart, size), path: path)
            offset = holeStart
        }
        _ = try Sys.retry("ftruncate", path) { ftruncate(destination.raw, off_t(size)) }
    }

    /// Copies bytes `from..<to` at the same offsets: copy_file_range where the kernel does it, else read and write.
    /// Every copy ends in an fsync (a copy-up's publishing rename waits for it), so each `writebackStep` copied is sent
    /// to the disk at once while the next is copied (`Sys.startWriteback`): the fsync then waits for the last step
    /// only. Copied whole and then fsynced, the data stayed in the page cache until the fsync (far below the kernel's
    /// dirty limits on a server with memory), and the copy and the disk took turns: 1 GiB on the benchmark disk in
    /// 0.69–2.8 s, of which the fsync alone was 0.36–0.46 s; in steps of 8 or 32 MiB, 0.40–2.2 s with fsyncs of
    /// 3–17 ms (a Python loop of `copy_file_range`, four rounds each, the disk's own speed varying between rounds).
    static func copyRange(_ source: FD, _ destination: FD, from: Int64, to: Int64, path: String) throws(UnionError) {
        var inOffset = from
        var outOffset = from
        // What is left after the last full step is the fsync's to write: a small copy (most copy-ups) starts none.
        var writtenBackTo = from
        func startWriteback() {
            guard outOffset - writtenBackTo >= Self.writebackStep else { return }
            Sys.startWriteback(destination.raw, offset: writtenBackTo, count: outOffset - writtenBackTo)
            writtenBackTo = outOffset
        }
        if let copyFileRange = Sys.gnu.copyFileRange {
            while inOffset < to {
                let count = copyFileRange(
                    source.raw, &inOffset, destination.raw, &outOffset, Int(min(to - inOffset, Self.writebackStep)), 0)
                if count > 0 {
                    startWriteback()
                    continue
                }
                if count == 0 { return }
                if errno == EINTR { continue }
                if errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP { break }
                throw Sys.error(errno, "copy_file_range", path)
            }
            if inOffset >= to { return }
        }
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while inOffset < to {
            let want = Int(min(Int64(chunk), to - inOffset))
            let count = try Sys.retry("pread", path) { pread(source.raw, buffer.baseAddress, want, off_t(inOffset)) }
            if count == 0 { return }
            var done = 0
            while done < count {
                let written = try Sys.retry("pwrite", path) {
                    pwrite(destination.raw, buffer.baseAddress! + done, count - done, off_t(inOffset) + off_t(done))
                }
                done += written
            }
            inOffset += Int64(count)
            outOffset = inOffset
            startWriteback()
        }
    }

    /// How much of a copy is sent to the disk at a time while the rest is copied (see `copyRange`).
    static let writebackStep: Int64 = 16 << 20

    /// Copies extended attributes. Skipped, as overlayfs skips them: a source file system without xattrs, an
    /// attribute removed while copying, and one the destination refuses to take from us (EPERM: `trusted.*` or
    /// `security.*` without the capability; ENOTSUP: a namespace it does not support). Any other failure (no space,
    /// an I/O error) fails the copy: a copy silently missing an ACL or a capability must not be published.
    static func copyXattrs(from source: FD, to destination: FD) throws(UnionError) {
        guard let list = Sys.gnu.flistxattr, let get = Sys.gnu.fgetxattr, let set = Sys.gnu.fsetxattr else { return }
        // The list (and a value) may grow between asking its size and reading it: ask again, a few times.
        var names: [CChar] = []
        var listed = -1
        for _ in 0..<8 {
            let size = list(source.raw, nil, 0)
            if size < 0 {
                if errno == ENOTSUP || errno == EOPNOTSUPP { return }
                throw Sys.error(errno, "flistxattr", "copy-up source")
            }
            if size == 0 { return }
            names = [CChar](repeating: 0, count: size)
            listed = list(source.raw, &names, size)
            if listed >= 0 { break }
            if errno != ERANGE { throw Sys.error(errno, "flistxattr", "copy-up source") }
        }
        guard listed > 0 else { return }
        var start = 0
        for index in 0..<listed where names[index] == 0 {
            let key = String(decoding: names[start..<index].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            start = index + 1
            // overlayfs markers of a foreign lower mean nothing in our upper (and would mislead overlayfs later).
            if key.hasPrefix("trusted.overlay.") || key.hasPrefix("user.overlay.") { continue }
            var value: [UInt8] = []
            var length = -1
            for _ in 0..<8 {
                let size = get(source.raw, key, nil, 0)
                if size < 0 { break }
                value = [UInt8](repeating: 0, count: max(size, 1))
                length = value.withUnsafeMutableBytes { get(source.raw, key, $0.baseAddress, size) }
                if length >= 0 || errno != ERANGE { break }
            }
            if length < 0 {
                if errno == ENODATA { continue }  // removed since it was listed
                throw Sys.error(errno, "fgetxattr \(key)", "copy-up source")
            }
            let stored = value.withUnsafeBytes { set(destination.raw, key, $0.baseAddress, length, 0) }
            if stored < 0 {
                if errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP { continue }
                throw Sys.error(errno, "fsetxattr \(key)", "copy-up destination")
            }
        }
    }
}
