import Glibc
import Synchronization

// Syscalls in one place: every wrapper retries EINTR and turns a failure into a `UnionError` that names the call
// and the layer-relative path. Linux-only constants and GNU functions that Swift's Glibc module does not export
// are defined or resolved (dlsym) here.

enum Sys {
    static let O_PATH: CInt = 0o10000000
    static let SEEK_DATA: CInt = 3
    static let SEEK_HOLE: CInt = 4
    static let AT_EMPTY_PATH: CInt = 0x1000
    static let UTIME_NOW: Int = (1 << 30) - 1
    static let UTIME_OMIT: Int = (1 << 30) - 2
    static let FICLONE: UInt = 0x4004_9409
    static let RENAME_NOREPLACE: UInt32 = 1
    static let RENAME_EXCHANGE: UInt32 = 2
    static let XATTR_CREATE: CInt = 1
    /// preadv2's flag: fail with EAGAIN rather than wait for data not in the page cache.
    static let RWF_NOWAIT: CInt = 0x0000_0008

    static func makedev(_ major: UInt32, _ minor: UInt32) -> dev_t {
        let ma = UInt64(major), mi = UInt64(minor)
        return dev_t((ma & 0xfff) << 8 | (ma & ~0xfff) << 32 | (mi & 0xff) | (mi & ~0xff) << 12)
    }
    static func major(_ d: dev_t) -> UInt32 {
        UInt32(truncatingIfNeeded: ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff))
    }
    static func minor(_ d: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: ((d >> 12) & 0xffff_ff00) | (d & 0xff)) }

    // GNU functions not exported by the Glibc module, resolved once.
    typealias CopyFileRangeFn =
        @convention(c) (CInt, UnsafeMutablePointer<Int64>?, CInt, UnsafeMutablePointer<Int64>?, Int, CUnsignedInt) ->
        Int
    typealias FGetXattrFn = @convention(c) (CInt, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
    typealias FListXattrFn = @convention(c) (CInt, UnsafeMutablePointer<CChar>?, Int) -> Int
    typealias FSetXattrFn = @convention(c) (CInt, UnsafePointer<CChar>, UnsafeRawPointer?, Int, CInt) -> CInt
    typealias SyncfsFn = @convention(c) (CInt) -> CInt
    typealias SyncFileRangeFn = @convention(c) (CInt, Int64, Int64, CUnsignedInt) -> CInt
    typealias FstatfsFn = @convention(c) (CInt, UnsafeMutableRawPointer) -> CInt
    typealias Renameat2Fn =
        @convention(c) (CInt, UnsafePointer<CChar>, CInt, UnsafePointer<CChar>, CUnsignedInt) -> CInt
    typealias Preadv2Fn = @convention(c) (CInt, UnsafePointer<iovec>?, CInt, off_t, CInt) -> Int
    /// syscall(2) with the five arguments of cachestat(2), which the C library has no wrapper for. On x86-64 and
    /// arm64 a variadic function takes integer arguments in the registers a fixed one does.
    typealias CachestatFn =
        @convention(c) (Int, CInt, UnsafeRawPointer, UnsafeMutableRawPointer, CUnsignedInt) -> Int

    struct GNU: @unchecked Sendable {  // immutable after init: function pointers only
        let copyFileRange: CopyFileRangeFn?
        let fgetxattr: FGetXattrFn?
        let flistxattr: FListXattrFn?
        let fsetxattr: FSetXattrFn?
        let renameat2: Renameat2Fn?
        let syncfs: SyncfsFn?
        let syncFileRange: SyncFileRangeFn?
        let fstatfs: FstatfsFn?
        let preadv2: Preadv2Fn?
        let cachestat: CachestatFn?

        init() {
            let handle = dlopen(nil, RTLD_NOW)
            func sym<T>(_ name: String, _: T.Type) -> T? {
                guard let symbol = dlsym(handle, name) else { return nil }
                return unsafeBitCast(symbol, to: T.self)
            }
            self.copyFileRange = sym("copy_file_range", CopyFileRangeFn.self)
            self.fgetxattr = sym("fgetxattr", FGetXattrFn.self)
            self.flistxattr = sym("flistxattr", FListXattrFn.self)
            self.fsetxattr = sym("fsetxattr", FSetXattrFn.self)
            self.renameat2 = sym("renameat2", Renameat2Fn.self)
            self.syncfs = sym("syncfs", SyncfsFn.self)
            self.syncFileRange = sym("sync_file_range", SyncFileRangeFn.self)
            self.fstatfs = sym("fstatfs", FstatfsFn.self)
            self.preadv2 = sym("preadv2", Preadv2Fn.self)
            #if arch(x86_64) || arch(arm64)
            self.cachestat = sym("syscall", CachestatFn.self)
            #else
            self.cachestat = nil
            #endif
        }
    }
    static let gnu = GNU()

    /// syncfs(2); `sync()` of everything where the C library lacks it.
    static func syncfs(_ fd: CInt) -> CInt {
        if let libcSyncfs = Self.gnu.syncfs { return libcSyncfs(fd) }
        Glibc.sync()
        return 0
    }

    /// Starts writing back the dirty pages of `fd` in `offset..<offset + count` without waiting for them
    /// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`). Only a head start: it makes nothing durable (no metadata, no
    /// cache flush), so whoever needs the data durable still fsyncs, and that fsync reports any write error; a failure
    /// here is therefore not one.
    static func startWriteback(_ fd: CInt, offset: Int64, count: Int64) {
        guard count > 0, let syncFileRange = Self.gnu.syncFileRange else { return }
        _ = syncFileRange(fd, offset, count, 2)  // SYNC_FILE_RANGE_WRITE
    }

    static func error(_ code: Int32, _ call: String, _ path: String) -> UnionError {
        switch code {
        case ENOENT: return .noEntry
        case EEXIST: return .exists
        case ENOTDIR: return .notDirectory
        case EISDIR: return .isDirectory
        case ENOTEMPTY: return .notEmpty
        case ENOSPC: return .noSpace
        case EDQUOT: return .quotaExceeded
        case EFBIG: return .fileTooLarge
        case EACCES: return .accessDenied
        case EPERM: return .notPermitted
        case EROFS: return .readOnly
        case ENAMETOOLONG: return .nameTooLong
        case EXDEV: return .crossDevice
        default: return .io(errno: code, call: call, path: path)
        }
    }

    /// Runs `body` until it does not fail with EINTR; returns its result or throws the mapped error.
    @inline(__always)
    static func retry<T: BinaryInteger>(
        _ call: String, _ path: @autoclosure () -> String, _ body: () -> T
    )
        throws(UnionError) -> T
    {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            throw Self.error(code, call, path())
        }
    }

    /// ioctl(FICLONE): `destination` shares the extents of `source`. False where the file systems cannot (not the
    /// same one, no reflinks: EXDEV, EOPNOTSUPP, EINVAL, ENOTTY...): the caller then copies the bytes. Out of space
    /// or an I/O error is a failure: a copy would meet it too.
    static func cloneFile(
        from source: FD, to destination: FD, path: @autoclosure () -> String
    ) throws(UnionError)
        -> Bool
    {
        while true {
            if ioctl(destination.raw, Self.FICLONE, source.raw) == 0 { return true }
            let code = errno
            switch code {
            case EINTR: continue
            case ENOSPC, EDQUOT, EIO: throw Self.error(code, "ioctl FICLONE", path())
            default: return false
            }
        }
    }

    /// `preadv2` with RWF_NOWAIT until `buffer` is full or the file ends: the bytes read, only when every one of them
    /// was in the page cache. nil when the kernel would have waited for any of them (EAGAIN, possibly after a partial
    /// read), cannot say without waiting (no RWF_NOWAIT for this file system: EOPNOTSUPP), or failed: the caller then
    /// reads the range the ordinary way, which waits and reports errors. A partial read is not offered as a short
    /// READ: the client would ask for the rest in another READ, a round trip more than the blocking read costs.
    static func preadWithoutWaiting(_ fd: FD, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Int? {
        guard let preadv2 = Self.gnu.preadv2 else { return nil }
        return Self.fillWithoutWaiting(buffer.count) { done in
            var iov = iovec(iov_base: buffer.baseAddress! + done, iov_len: buffer.count - done)
            return preadv2(fd.raw, &iov, 1, off_t(offset) + off_t(done), Self.RWF_NOWAIT)
        }
    }

    static let pageSize = UInt64(max(1, sysconf(Int32(_SC_PAGESIZE))))

    /// cachestat(2)'s number (Linux 6.5, the same on x86-64 and arm64).
    static let SYS_cachestat = 451

    /// Whether all `count` bytes at `offset` of `fd` are in the page cache (cachestat(2), which reads nothing and copies
    /// nothing). False when the kernel cannot tell (before Linux 6.5), so a caller falls back to reading.
    static func isCached(_ fd: FD, offset: UInt64, count: UInt64) -> Bool {
        guard count > 0, let counts = Self.pageCacheCounts(fd, offset: offset, count: count) else { return false }
        let pageSize = Self.pageSize
        let firstPage = offset / pageSize
        let pages = (offset + count + pageSize - 1) / pageSize - firstPage
        return counts.cached >= pages
    }

    /// cachestat(2) of `count` bytes at `offset` of `fd` (`count` 0: to the end of the file): pages in the page cache,
    /// and of them dirty or under writeback. Nil when the kernel cannot tell (before Linux 6.5).
    static func pageCacheCounts(
        _ fd: FD, offset: UInt64, count: UInt64
    ) -> (cached: UInt64, dirty: UInt64, writeback: UInt64)? {
        guard let cachestat = Self.gnu.cachestat else { return nil }
        // struct cachestat_range { __u64 off; __u64 len; }, struct cachestat { __u64 nr_cache, nr_dirty,
        // nr_writeback, nr_evicted, nr_recently_evicted; }
        let range: (UInt64, UInt64) = (offset, count)
        var counts: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        let status = withUnsafePointer(to: range) { range in
            withUnsafeMutablePointer(to: &counts) { cachestat(Self.SYS_cachestat, fd.raw, range, $0, 0) }
        }
        return status == 0 ? (counts.0, counts.1, counts.2) : nil
    }

    /// statvfs(3)'s mount flags (an enum in C that Swift's Glibc module leaves out).
    static let ST_NOATIME: UInt = 1024
    static let ST_RELATIME: UInt = 4096

    /// Whether reading `fd` now leaves its access time as `st` shows it: on a `noatime` mount always; on a
    /// `relatime` mount (Linux's default) when the access time is later than the modification and change times and
    /// less than a day old; on a `strictatime` mount never.
    static func readLeavesAccessTime(_ fd: FD, _ st: stat) -> Bool {
        var fs = statvfs()
        guard fstatvfs(fd.raw, &fs) == 0 else { return false }
        if fs.f_flag & Self.ST_NOATIME != 0 { return true }
        guard fs.f_flag & Self.ST_RELATIME != 0 else { return false }
        func later(_ time: timespec, than other: timespec) -> Bool {
            time.tv_sec > other.tv_sec || (time.tv_sec == other.tv_sec && time.tv_nsec > other.tv_nsec)
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return later(st.st_atim, than: st.st_mtim) && later(st.st_atim, than: st.st_ctim)
            && now.tv_sec - st.st_atim.tv_sec < 86_400
    }

    /// A descriptor of its own (close-on-exec) for what `fd` opens, for a caller that outlives `fd`'s holder; nil
    /// when the process has no descriptor left.
    static func duplicate(_ fd: FD) -> CInt? {
        let copy = fcntl(fd.raw, F_DUPFD_CLOEXEC, 0)
        return copy >= 0 ? copy : nil
    }

    /// The loop of `preadWithoutWaiting`: `read(done)` reads at `done` bytes into the range and returns the bytes
    /// read, 0 at the end of the file, or -1 with `errno` set.
    static func fillWithoutWaiting(_ count: Int, _ read: (_ done: Int) -> Int) -> Int? {
        var done = 0
        while done < count {
            let got = read(done)
            if got > 0 {
                done += got
            } else if got == 0 {
                break
            } else if errno != EINTR {
                return nil
            }
        }
        return done
    }

    /// lseek(2) with `SEEK_DATA` or `SEEK_HOLE`: the offset found, or nil for ENXIO (no data at or after `offset`;
    /// `offset` at or past the end). A file system without them fails with `.io(errno: EINVAL, ...)`.
    static func seek(
        _ fd: FD, _ offset: Int64, _ whence: CInt, path: @autoclosure () -> String
    ) throws(UnionError)
        -> Int64?
    {
        while true {
            let found = lseek(fd.raw, off_t(offset), whence)
            if found >= 0 { return Int64(found) }
            let code = errno
            if code == EINTR { continue }
            if code == ENXIO { return nil }
            throw Self.error(code, whence == Self.SEEK_DATA ? "lseek SEEK_DATA" : "lseek SEEK_HOLE", path())
        }
    }

    /// flock(2) exclusively without waiting: false when another open file description holds the lock.
    static func tryLock(_ fd: FD, path: @autoclosure () -> String) throws(UnionError) -> Bool {
        while true {
            if flock(fd.raw, LOCK_EX | LOCK_NB) == 0 { return true }
            let code = errno
            if code == EINTR { continue }
            if code == EWOULDBLOCK { return false }
            throw Self.error(code, "flock", path())
        }
    }

    /// Like `retry` but returns `nil` for ENOENT.
    static func retryOrMissing<T: BinaryInteger>(
        _ call: String, _ path: @autoclosure () -> String, _ body: () -> T
    )
        throws(UnionError) -> T?
    {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            if code == ENOENT { return nil }
            throw Self.error(code, call, path())
        }
    }
}

/// An owned file descriptor, closed when the last reference goes or by `close()` (namespace close; no operation
/// runs then, they all hold the namespace lock and check for a closed namespace first).
final class FD: Sendable {
    private let storage: Atomic<CInt>
    init(_ raw: CInt) { self.storage = Atomic(raw) }
    var raw: CInt { self.storage.load(ordering: .relaxed) }
    func close() {
        let fd = self.storage.exchange(-1, ordering: .relaxed)
        if fd >= 0 { Glibc.close(fd) }
    }
    deinit { self.close() }
}

extension Array where Element == UInt8 {
    /// Calls `body` with a NUL-terminated C string of these bytes.
    @inline(__always)
    func withCName<R>(_ body: (UnsafePointer<CChar>) throws(UnionError) -> R) throws(UnionError) -> R {
        // On the stack for names (up to 255 bytes) and paths alike: every system call by name went through two
        // allocations here (a READDIRPLUS page makes one such call per entry).
        let count = self.count
        let result = withUnsafeTemporaryAllocation(of: CChar.self, capacity: count + 1) {
            (cString) -> Result<R, UnionError> in
            self.withUnsafeBytes { bytes in
                UnsafeMutableRawBufferPointer(cString).copyMemory(from: bytes)
            }
            cString[count] = 0
            return Result { () throws(UnionError) -> R in try body(cString.baseAddress!) }
        }
        return try result.get()
    }

    var displayString: String { String(decoding: self, as: UTF8.self) }
}

extension stat {
    var fileType: FileType {
        switch self.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFLNK: return .symlink
        case S_IFCHR: return .characterDevice
        case S_IFBLK: return .blockDevice
        case S_IFSOCK: return .socket
        case S_IFIFO: return .fifo
        default: return .regular
        }
    }
    var isDirectory: Bool { self.st_mode & S_IFMT == S_IFDIR }
    var isRegular: Bool { self.st_mode & S_IFMT == S_IFREG }
    /// An overlayfs whiteout: a character device 0/0.
    var isOverlayWhiteout: Bool { self.st_mode & S_IFMT == S_IFCHR && self.st_rdev == 0 }
    var permissionBits: UInt32 { UInt32(self.st_mode) & 0o7777 }
}
