import Foundation
import Glibc
import TestSupport
import Testing

@testable import Union

/// What reaches the disk, in which order, when a group-commit batch is made durable (a `syncfs` and the fsync after it
/// on ext4 without a journal, one fsync on ext4 with one): the requests a loop device receives, traced at the block
/// layer (tracefs).
/// A write the disk's volatile cache still holds is lost by a power cut; only a cache flush issued after the write
/// completed keeps it. Needs root, a loop device, `mkfs.ext4` and tracefs; a test that cannot set them up fails.
@Suite struct FlushOrderTests {
    /// A batch whose records grow the sidecar's WAL, on ext4 with and without a journal, made durable the way a
    /// namespace on that file system makes it (`Files.filesystemSync`). Without a journal (`syncfs`): the `syncfs`
    /// writes the WAL's data, and the WAL's new size and extents in the inode table block afterwards; ext4 flushes the
    /// cache in between. Before the fsync after it, 45 to 93 % of such batches returned with the inode block written
    /// after their last flush (a power cut then lost their records while the names they describe stayed on disk).
    /// With a journal (one fsync of the object changed last): the journal commit ends with its flushed commit block.
    @Test(arguments: [false, true])
    func aBatchHasNoWriteAfterItsLastCacheFlush(journal: Bool) throws {
        // The image on tmpfs: the loop device still has a write cache and issues flushes, which then cost nothing,
        // so the test does not wait on a disk that the rest of the suite keeps busy.
        let base = try makeTemporaryDirectory("strata-flush-order", in: "/dev/shm")
        defer { try? FileManager.default.removeItem(atPath: base) }  // runs last: after the unmount below
        let disk = try LoopDisk(under: base, journal: journal)
        defer { disk.remove() }
        let trace = try BlockTrace(device: disk.device)
        defer { trace.remove() }
        let tree = FD(open(disk.mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        let s = try Sidecar(path: disk.mountpoint + "/layer.db", readOnly: false)
        defer { s.close() }
        let mode = Files.filesystemSync(for: tree)
        switch (mode, journal) {
        case (.wholeFilesystem, false), (.orderedJournal, true): break
        default: Issue.record("ext4 \(journal ? "with" : "without") a journal synced as \(mode)")
        }
        try s.useFilesystemSync(mode, syncs: FileSyncs())
        try s.write("test") { db in try db.execute(sql: "CREATE TABLE grow(b BLOB)") }
        let batches = 48
        // Records that grow the WAL by three pages.
        let grow: SidecarRecord = { db in try db.execute(sql: "INSERT INTO grow VALUES (zeroblob(10000))") }
        try Self.traceBatches(batches, of: grow, sidecar: s, tree: tree, mountpoint: disk.mountpoint, trace: trace)
        let windows = try trace.windows()
        #expect(windows.count == batches, "every batch's markers are in the trace")
        let flushes = windows.map { $0.filter(\.flushes).count }
        #expect(flushes.allSatisfy { $0 > 0 }, "every batch flushed the disk's cache (flushes per batch: \(flushes))")
        let unflushed = windows.indices.filter { i in
            let lastFlush = windows[i].lastIndex(where: \.flushes) ?? -1
            return windows[i].indices.contains { $0 > lastFlush && windows[i][$0].writes }
        }
        #expect(unflushed.isEmpty, "batches \(unflushed) returned with a write issued after their last cache flush")
    }

    /// ext4 with a journal, and a WAL overwritten in place (checkpointed, then restarted from its start: no new size,
    /// no new blocks, often not even a new modification time within the clock's tick): every batch still commits the
    /// journal, so the name made in `tree/` before it is durable with it. A flush that fsynced the WAL alone would
    /// write its pages and flush the cache, and with no metadata change of the WAL's own to log, commit nothing of
    /// the tree's.
    @Test func aJournaledBatchCommitsTheTreeWhenItsWALIsOverwrittenInPlace() throws {
        let base = try makeTemporaryDirectory("strata-flush-order", in: "/dev/shm")
        defer { try? FileManager.default.removeItem(atPath: base) }  // runs last: after the unmount below
        let disk = try LoopDisk(under: base, journal: true)
        defer { disk.remove() }
        let journal = try disk.journalSectors()
        let tree = FD(open(disk.mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        let s = try Sidecar(path: disk.mountpoint + "/layer.db", readOnly: false)
        defer { s.close() }
        let mode = Files.filesystemSync(for: tree)
        guard case .orderedJournal = mode else {
            Issue.record("ext4 with a journal synced as \(mode)")
            return
        }
        try s.useFilesystemSync(mode, syncs: FileSyncs())
        try s.write("test") { db in
            try db.execute(sql: "CREATE TABLE counter(v INTEGER)")
            try db.execute(sql: "INSERT INTO counter VALUES (0)")
        }
        let batches = 48
        // A WAL longer than the batches will write, all checkpointed: the first transaction after the checkpoint
        // restarts it from its start, and the batches then overwrite its frames one by one.
        for _ in 0..<(2 * batches) { try s.write("test") { db in try db.execute(sql: "UPDATE counter SET v = v + 1") } }
        try s.queue.writeWithoutTransaction { db in _ = try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
        let wal = disk.mountpoint + "/layer.db-wal"
        let walSize = try #require(Self.size(wal))
        let trace = try BlockTrace(device: disk.device)
        defer { trace.remove() }
        let bump: SidecarRecord = { db in try db.execute(sql: "UPDATE counter SET v = v + 1") }
        try Self.traceBatches(batches, of: bump, sidecar: s, tree: tree, mountpoint: disk.mountpoint, trace: trace)
        #expect(Self.size(wal) == walSize, "the batches overwrote the WAL in place")
        let windows = try trace.windows()
        #expect(windows.count == batches, "every batch's markers are in the trace")
        let uncommitted = windows.indices.filter { i in
            !windows[i].contains { $0.writes || $0.flushes ? journal.contains($0.sector) : false }
        }
        #expect(uncommitted.isEmpty, "batches \(uncommitted) wrote nothing to the journal (tree change not committed)")
    }

    /// `count` batches between the trace's "starts" and "durable" markers, each of `record` and a name made in `tree`
    /// just before (its directory block and inode), the tree its sync target.
    private static func traceBatches(
        _ count: Int, of record: @escaping SidecarRecord, sidecar s: Sidecar, tree: FD, mountpoint: String,
        trace: BlockTrace
    ) throws {
        for batch in 0..<count {
            let fd = openat(tree.raw, "f\(batch)", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            #expect(fd >= 0)
            close(fd)
            try trace.mark("batch \(batch) starts")
            try s.commits.waitDurable(s.commits.enqueue([record], syncs: [.directory(tree, path: mountpoint)]))
            try trace.mark("batch \(batch) durable")
        }
    }

    private static func size(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }
}

/// A file-backed ext4 file system (with or without a journal) on a loop device, mounted under `directory`.
private struct LoopDisk {
    let image: String
    let device: String
    let mountpoint: String

    init(under directory: String, journal: Bool) throws {
        self.image = directory + "/disk.img"
        self.mountpoint = directory + "/mnt"
        #expect(mkdir(self.mountpoint, 0o755) == 0)
        let image = open(self.image, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        #expect(image >= 0 && ftruncate(image, 128 << 20) == 0)
        close(image)
        // Inode tables initialised now: no lazy-init thread writing to the disk while the test traces it.
        let mkfs = try run(
            "/usr/sbin/mkfs.ext4",
            [
                "-q", "-F", "-b", "4096", "-O", journal ? "has_journal" : "^has_journal", "-E",
                "lazy_itable_init=0,lazy_journal_init=0,nodiscard", self.image,
            ])
        guard mkfs.succeeded else { throw TestSupportError("mkfs.ext4 \(self.image): \(mkfs.output)") }
        let attach = try run("/usr/sbin/losetup", ["--find", "--show", self.image])
        guard attach.succeeded else {
            throw TestSupportError("losetup --find --show \(self.image): \(attach.output)")
        }
        self.device = attach.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let mount = try run("/usr/bin/mount", ["-o", "noinit_itable", self.device, self.mountpoint])
        guard mount.succeeded else {
            _ = try? run("/usr/sbin/losetup", ["-d", self.device])
            throw TestSupportError("mount \(self.device) \(self.mountpoint): \(mount.output)")
        }
    }

    /// The sectors of the device that hold the journal (its inode, 8, is made in one piece by mkfs).
    func journalSectors() throws -> Range<UInt64> {
        let blocks = try runSplit("/usr/sbin/debugfs", ["-R", "blocks <8>", self.image])
        let numbers = blocks.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { UInt64($0) }
        guard blocks.succeeded, let first = numbers.min(), let last = numbers.max() else {
            throw TestSupportError("debugfs -R 'blocks <8>' \(self.image): \(blocks.stdout)\(blocks.stderr)")
        }
        return first * 8..<(last + 1) * 8  // 4096-byte blocks, 512-byte sectors
    }

    func remove() {
        _ = try? run("/usr/bin/umount", [self.mountpoint])
        _ = try? run("/usr/sbin/losetup", ["-d", self.device])
    }
}

/// One block request as the block layer issued it to the device (`block_rq_issue`).
private struct BlockRequest {
    /// The first sector the request reaches (0 for a flush alone).
    let sector: UInt64
    /// The request's `rwbs` flags: an optional leading F (flush the cache first), the operation (R, W, D, F for a
    /// flush alone, ...), F for a write that bypasses the cache (FUA), then modifiers (S, M, ...).
    let rwbs: String

    private var operationAndAfter: Substring {
        self.rwbs.count > 1 && self.rwbs.first == "F" ? self.rwbs.dropFirst() : self.rwbs[...]
    }
    /// A flush of the disk's cache (alone, or before a write): what the device completed before it is durable.
    var flushes: Bool { self.rwbs.first == "F" }
    /// A write that the cache may hold (not FUA).
    var writes: Bool {
        let rest = self.operationAndAfter
        return rest.first == "W" && rest.dropFirst().first != "F"
    }
}

/// A private tracefs instance recording the block requests issued to one device, and markers written by the test.
private struct BlockTrace {
    let instance: String

    init(device: String) throws {
        var root = "/sys/kernel/tracing"
        if access(root + "/instances", F_OK) != 0 {
            // Not mounted at its usual place: mount it there (tracefs is one file system; mounting it twice is fine).
            let mounted = try run("/usr/bin/mount", ["-t", "tracefs", "nodev", root])
            if !mounted.succeeded { root = "/sys/kernel/debug/tracing" }
        }
        self.instance = root + "/instances/strata-flush-order-\(getpid())-\(UUID().uuidString.prefix(8))"
        guard mkdir(self.instance, 0o755) == 0 else {
            throw TestSupportError(
                "cannot make the tracefs instance \(self.instance): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard stat(device, &st) == 0 else { throw TestSupportError("stat \(device)") }
        // The tracepoint's dev is the kernel's dev_t: major << 20 | minor.
        let dev = (UInt64(Sys.major(st.st_rdev)) << 20) | UInt64(Sys.minor(st.st_rdev))
        try self.write("events/block/block_rq_issue/filter", "dev == \(dev)")
        try self.write("events/block/block_rq_issue/enable", "1")
    }

    func mark(_ text: String) throws { try self.write("trace_marker", text) }

    /// The requests between each "starts" marker and the next "durable" marker, in order.
    func windows() throws -> [[BlockRequest]] {
        let text = try self.read("trace")
        var windows: [[BlockRequest]] = []
        var current: [BlockRequest]?
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            if line.contains("tracing_mark_write: batch ") {
                if line.hasSuffix(" starts") {
                    current = []
                } else if line.hasSuffix(" durable"), let requests = current {
                    windows.append(requests)
                    current = nil
                }
            } else if let at = line.range(of: "block_rq_issue: ") {
                // "block_rq_issue: 7,1 WSM 4096 () 520 + 2 ..."
                let fields = line[at.upperBound...].split(separator: " ")
                if fields.count > 1 {
                    let sector = fields.count > 4 ? UInt64(fields[4]) ?? 0 : 0
                    current?.append(BlockRequest(sector: sector, rwbs: String(fields[1])))
                }
            }
        }
        return windows
    }

    /// Disables the event and removes the instance. The kernel refuses the removal (EBUSY) for a moment after the
    /// event is disabled: retried, for at most a second.
    func remove() {
        try? self.write("events/block/block_rq_issue/enable", "0")
        for _ in 0..<100 {
            if rmdir(self.instance) == 0 || errno != EBUSY { return }
            usleep(10_000)
        }
    }

    /// A tracefs file reports no size: read until the end.
    private func read(_ file: String) throws -> String {
        let path = self.instance + "/" + file
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw TestSupportError("read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func write(_ file: String, _ value: String) throws {
        let path = self.instance + "/" + file
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
            throw TestSupportError("write \(value) to \(path): \(String(cString: strerror(errno)))")
        }
    }
}
