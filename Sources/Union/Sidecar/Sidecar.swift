import Basics
import Foundation
import GRDB
import Synchronization

/// A sidecar change queued for the next group commit (runs inside that batch's transaction).
typealias SidecarRecord = (Database) throws -> Void

/// How a batch makes the file system changes it covers durable (see `Docs/CRASH-ORDER.md`).
enum FilesystemSync: Sendable {
    /// No file system changes to sync (a read-only namespace's identity store).
    case none
    /// ext4 (with its journal) and XFS log every metadata change in order: an fsync of the object changed last commits
    /// every earlier change of the file system too. One fsync per batch: of the WAL, its times touched first (`flush`).
    case orderedJournal
    /// Any other file system: `syncfs` once per batch (POSIX would need an fsync of every new inode and directory).
    case wholeFilesystem(FD)
    /// `tree/` on another file system than the sidecar: an fsync of every object changed (new and changed inodes with
    /// the sidecar's WAL first, then the directories naming them). A batch with a change no such fsync covers
    /// (`SyncTarget.filesystem`) syncs the file system of `tree/` (the FD) instead.
    case eachObject(FD)
}

/// One sidecar connection per layer, opened once (GRDB: one DatabaseQueue per database file).
///
/// Durability: WAL journal with `synchronous = FULL`, set after opening (GRDB would leave NORMAL), so a committed
/// write is on disk before `write` returns. Namespace changes do not write directly: they queue their records in
/// `commits` (group commit: one transaction and one sync for every change waiting); where the upper's file system
/// keeps anything (`useFilesystemSync`), batches commit with NORMAL and sync the WAL with their file system changes.
final class Sidecar: Sendable {
    let queue: DatabaseQueue
    let path: String
    let filesystemSync = Locked<FilesystemSync>(.none)
    /// Nanoseconds group-commit flushes spent in the syncs after their transaction (the file system's, the WAL's, the
    /// objects'): the rest of a flush's time is the sidecar transaction (`ChangeStatistics.flushSyncNanoseconds`).
    let syncNanoseconds = Atomic<UInt64>(0)
    /// With `.wholeFilesystem` and `.eachObject`: the shared syncfs calls and the file system's `st_dev`.
    private let sharedSyncfs = Locked<(FileSyncs, UInt64)>((Sidecar.filesystemSyncs, 0))
    /// Tests: runs at the start of each group-commit flush (on the leading waiter's thread); what it throws fails the
    /// flush.
    let beforeFlush = Locked<(@Sendable () throws(UnionError) -> Void)?>(nil)
    /// Set by `init`; never nil afterwards (a closure over `self` cannot be made before `self` exists).
    nonisolated(unsafe) private(set) var commits: GroupCommit<SidecarRecord>!

    /// A writable sidecar is opened with `locking_mode = EXCLUSIVE` before its first WAL access: SQLite then keeps
    /// the WAL index in the process's memory instead of a memory-mapped `-shm` file beside the database, and takes no
    /// `fcntl` locks per transaction. The `-shm` pages every transaction dirtied were written back by each batch's
    /// `syncfs` (write-protected, then faulted in again by the next transaction): in a boot storm of 100 clients, each
    /// with its own sidecar and a batch per change, server CPU per call fell from 136–152 µs to 98–114 and the storm
    /// took 1.94–2.10 s instead of 2.42–2.58 (alternating runs, the pragma then set after GRDB's open; as set here,
    /// 100 and 150 µs against 142 and 161 on a host slowing down run by run). Batches of many changes gain little.
    /// The upper is the server's alone anyway (its `lock`); another process reading a live sidecar (`strata layer
    /// inspect`) reads a copy (`LayerFormat.withStrataSidecar`).
    static let exclusiveLocking = true

    /// Opens (creating and migrating if `readOnly` is false) the sidecar at `path`; `nil` path = in memory.
    init(path: String?, readOnly: Bool) throws(UnionError) {
        self.path = path ?? ":memory:"
        do {
            var config = Configuration()
            config.readonly = readOnly
            config.label = "strata.sidecar"
            if let path, !readOnly, access(path, F_OK) != 0, errno == ENOENT {
                try Self.create(path, configuration: config)
            }
            if let path {
                var opening = config
                if !readOnly && Self.exclusiveLocking {
                    // Before anything reads the WAL, GRDB's own statements at the open included (see
                    // `exclusiveLocking`).
                    opening.prepareDatabase { db in try db.execute(sql: "PRAGMA locking_mode = EXCLUSIVE") }
                }
                self.queue = try DatabaseQueue(path: path, configuration: opening)
            } else {
                self.queue = try DatabaseQueue(configuration: config)
            }
            if !readOnly {
                try self.queue.writeWithoutTransaction { db in
                    if path != nil { try db.execute(sql: "PRAGMA journal_mode = WAL") }
                    try db.execute(sql: "PRAGMA synchronous = FULL")
                    if path != nil {
                        let pageSize = try Int.fetchOne(db, sql: "PRAGMA page_size") ?? Self.pageSize
                        try db.execute(
                            sql: "PRAGMA wal_autocheckpoint = \(Self.walCheckpointBytes / max(512, pageSize))")
                    }
                }
                try SidecarMigrations.migrator.migrate(self.queue)
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && readOnly {
            throw Self.heldByServer("open \(path ?? ":memory:")")
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
            // Another writer holds it (`exclusiveLocking`): a namespace on the same upper still open, in this process
            // or in another server.
            throw .sidecar(
                "open \(path ?? ":memory:"): the layer is open in another namespace (another Strata server on the same upper, or one still closing): stop the other server or point each at its own upper"
            )
        } catch {
            throw .sidecar("open \(path ?? ":memory:"): \(error)")
        }
        self.commits = GroupCommit { [unowned self] (batch) throws(UnionError) in try self.flush(batch) }
    }

    /// Creates the sidecar `path` whole: made under a temporary name, flushed once, then renamed into place and its
    /// directory flushed. A crash before the rename leaves only the temporary files, which the next creation
    /// removes; after it, the sidecar is complete, `initial` included.
    ///
    /// A new client's first MNT creates one (a room of clients powering on creates hundreds at once), so the work per
    /// sidecar is kept small: the migrated, empty database is made once per process (`template`) and each new
    /// sidecar starts as a copy of its bytes; `initial` then writes the records of this one sidecar (its secrets,
    /// the stack it was made for) in one transaction, so that opening it afterwards needs no durable write of them.
    /// Migrated in place, each step was its own durable transaction: about 18 flushes per sidecar, and the
    /// migrations' CPU for every client.
    static func create(
        _ path: String, configuration: Configuration, initial: ((Database) throws -> Void)? = nil
    ) throws {
        let temporary = path + ".new"
        let scratch = temporary + ".template"  // a template being made when the process stopped
        for leftover in [
            temporary, temporary + "-wal", temporary + "-shm", temporary + "-journal", scratch, scratch + "-wal",
            scratch + "-shm",
        ] {
            if unlink(leftover) != 0 && errno != ENOENT {
                throw Sys.error(errno, "unlink (leftover of an interrupted sidecar creation)", leftover)
            }
        }
        do {
            try Self.writeFile(temporary, try Self.template.bytes(configuration: configuration, scratch: temporary))
            if let initial {
                let queue = try DatabaseQueue(path: temporary, configuration: configuration)
                try queue.writeWithoutTransaction { db in
                    // No flush here either: the fsync below makes the file durable before anything refers to it.
                    try db.execute(sql: "PRAGMA synchronous = OFF")
                    try db.inTransaction {
                        try initial(db)
                        return .commit
                    }
                    try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
                }
                try queue.close()
            }
        } catch let error as UnionError {
            throw error
        } catch {
            throw UnionError.sidecar("create \(temporary): \(error)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        let file = FD(try Sys.retry("open", temporary) { open(temporary, O_RDONLY | O_CLOEXEC) })
        _ = try Sys.retry("fsync", temporary) { fsync(file.raw) }
        _ = try Sys.retry("rename", temporary) { rename(temporary, path) }
        _ = unlink(temporary + "-wal")
        _ = unlink(temporary + "-shm")
        try Files.fsyncDirectory(try Files.openDirectoryAbsolute(directory.isEmpty ? "." : directory), path: directory)
    }

    /// The bytes of an empty sidecar with every migration applied (WAL mode, checkpointed: a complete database in one
    /// file), made by the first creation of the process. The migrations are the same for every sidecar of one binary.
    static let template = SidecarTemplate()

    /// Makes the template now (in `directory`, nothing left there), so that the first new client's MNT does not run
    /// the migrations: a server with per-client uppers calls it before it listens.
    static func prepareTemplate(in directory: String) throws(UnionError) {
        var configuration = Configuration()
        configuration.label = "strata.sidecar"
        do {
            _ = try Self.template.bytes(configuration: configuration, scratch: directory + "/.sidecar")
        } catch let error as UnionError {
            throw error
        } catch {
            throw .sidecar("make the empty sidecar in \(directory): \(error)")
        }
    }

    /// The page size of new sidecars, in bytes. A transaction writes every page it changed to the WAL whole, and the
    /// record of a new object changed about three (the identity table's leaf and, before migration v7, a leaf of each
    /// of its two indexes).
    /// With SQLite's default of 4,096 bytes a booting client's sidecar wrote about 400 KiB of WAL for 28 new
    /// identities, two and a half times the bytes of the files the boot wrote, and each batch's sync wrote them back
    /// (kernel writeback the server's own CPU time does not show). Rows are 60 to 100 bytes: a 1,024-byte page still
    /// holds ten or more. Measured on ext4 without a journal, alternating: 2,000 CREATEs and their REMOVEs wrote 4.9
    /// MB of WAL instead of 14.3 MB, ran about 10 % faster at about 10 % less CPU per call, and a boot storm of 100
    /// clients took 180–189 µs of the host's CPU per call instead of 203–209. Sidecars made before keep 4,096.
    static let pageSize = 1024

    /// The WAL grows to about this many bytes before a commit copies it into the database (SQLite's automatic
    /// checkpoint, set in pages). SQLite's default, 1,000 pages, is 1 MiB with our pages: a create-heavy client filled
    /// it every ~25 batches, and each checkpoint ran inside a batch's flush with two fdatasyncs of its own (WAL, then
    /// database), 2 ms each on the benchmark disk. At 8 MiB the checkpoints are 8 times rarer and a page changed again
    /// in between is copied once: a flush's sidecar part fell from 647–652 to 502–545 µs (mkdir-tree, 50,100 changes,
    /// `strata_group_commit_sync_seconds_total` against `…flush_seconds_total`). The price is a WAL of up to 8 MiB
    /// beside a busy layer (recovered at open, read through SQLite's WAL index in memory).
    static let walCheckpointBytes = 8 << 20

    /// Makes the empty, migrated database at `path` (no flush: its creator flushes the copy it makes).
    fileprivate static func migrateEmpty(_ path: String, configuration: Configuration) throws {
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = OFF")
            // Before the first page is written: a database keeps the page size it was made with.
            try db.execute(sql: "PRAGMA page_size = \(Self.pageSize)")
            try db.execute(sql: "PRAGMA journal_mode = WAL")
        }
        try SidecarMigrations.migrator.migrate(queue)
        try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        try queue.close()
    }

    fileprivate static func readFile(_ path: String) throws(UnionError) -> [UInt8] {
        let fd = FD(try Sys.retry("open", path) { open(path, O_RDONLY | O_CLOEXEC) })
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = try Sys.retry("read", path) {
                chunk.withUnsafeMutableBytes { Glibc.read(fd.raw, $0.baseAddress, $0.count) }
            }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
        }
    }

    private static func writeFile(_ path: String, _ bytes: [UInt8]) throws(UnionError) {
        let fd = FD(try Sys.retry("open", path) { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) })
        var done = 0
        while done < bytes.count {
            let count = try Sys.retry("write", path) {
                bytes.withUnsafeBytes { Glibc.write(fd.raw, $0.baseAddress! + done, $0.count - done) }
            }
            done += count
        }
    }

    /// One batch of the group commit: one transaction with every queued record, then what makes the batch's file
    /// system changes durable. The changes of a batch need no order among themselves (a change whose record must
    /// precede its file system step waits for that record before making the step; `afterSync` records come in a later
    /// batch).
    private func flush(_ batch: GroupCommit<SidecarRecord>.Batch) throws(UnionError) {
        if let hook = self.beforeFlush.current { try hook() }
        let mode = self.filesystemSync.withLock { $0 }
        let what = "commit \(batch.records.count) changes (batch \(batch.number))"
        switch mode {
        case .wholeFilesystem, .eachObject, .orderedJournal:
            // The sidecar runs with synchronous = NORMAL. Only sidecar records (a first sighting's identity, a
            // whiteout that must precede an unlink, a dropped whiteout): the WAL's own sync makes them durable.
            if batch.syncs.isEmpty {
                if !batch.records.isEmpty {
                    try self.transaction(what, syncingWAL: true) { db in for record in batch.records { try record(db) }
                    }
                }
                return
            }
            if !batch.records.isEmpty {
                try self.transaction(what) { db in for record in batch.records { try record(db) } }
            }
        case .none:
            if !batch.records.isEmpty {
                try self.transaction(what) { db in for record in batch.records { try record(db) } }
            }
        }
        let syncing = Monotonic.nanoseconds()
        defer { self.syncNanoseconds.add(Monotonic.nanoseconds() &- syncing, ordering: .relaxed) }
        switch mode {
        case .none:
            break
        case .wholeFilesystem(let fd):
            // One syncfs covers the sidecar's WAL (same file system) and the tree.
            try self.syncFilesystem(fd)
        case .orderedJournal:
            // One fsync of the WAL, its times touched first, makes the whole batch durable. A journal commits its
            // transactions in order, and the touch puts the WAL's inode into the transaction running now, younger
            // than every change of the batch (all made before this flush began). The WAL's fsync then writes the
            // WAL's pages, commits that transaction and with it every older one, and ends with a disk cache flush
            // that covers the pages it wrote (ext4: the commit block's flush, or a flush of its own when the
            // transaction was already committed; XFS: its log force, likewise). Without the touch, a WAL overwritten
            // in place (after a checkpoint) has no metadata change of its own, and its fsync would commit none of
            // the tree's. Before: the WAL fdatasynced at the same time as an fsync of the object changed last, two
            // journal waits and two cache flushes per batch (Docs/CRASH-ORDER.md, "The syncs of a batch").
            let wal = self.walTarget()
            if case .data(let fd, let path)? = wal, Self.touchTimes(fd, path: path) {
                try Self.sync(.file(fd, path: path))
            } else {
                let last = batch.syncs.last(where: { if case .filesystem = $0 { false } else { true } })
                try ParallelSyncs.shared.sync([wal, last].compactMap { $0 })
            }
        case .eachObject(let tree):
            // The WAL's fdatasync in the first round, with the new inodes (the records need no order with them).
            let wal = self.walTarget()
            if let rounds = Self.syncOrder(batch.syncs, with: wal) {
                for round in rounds { try ParallelSyncs.shared.sync(round) }
            } else {
                if let wal { try Self.sync(wal) }  // `tree/` may be on another file system than the sidecar
                try self.syncFilesystem(tree)
            }
        }
    }

    /// Sets the access and modification times of the open file `fd` to now: a metadata change, logged in the
    /// journal's running transaction. False when refused (then the caller syncs otherwise).
    private static func touchTimes(_ fd: FD, path: String) -> Bool {
        (try? Sys.retry("futimens", path) { futimens(fd.raw, nil) }) != nil
    }

    /// The sidecar's WAL, for an fdatasync that makes the transactions committed with synchronous = NORMAL durable;
    /// nil when there is none (an in-memory sidecar).
    private func walTarget() -> SyncTarget? {
        let wal = self.path + "-wal"
        let fd = open(wal, O_RDONLY | O_CLOEXEC)
        return fd < 0 ? nil : .data(FD(fd), path: wal)
    }

    /// The targets of a batch in the order they are fsynced, each object once (by device and inode; a directory that
    /// received a hundred entries is fsynced once), in two rounds, each fsynced at once (`ParallelSyncs`): `first`
    /// (the WAL), the new and changed inodes (files, new directories), then the directories whose entries changed. A
    /// name then never reaches the disk before the inode it names: ext4 without a journal writes only what is fsynced,
    /// and a removed file's inode is freed in memory only, so an entry durable before its new inode could name, after
    /// a power cut, the old inode's content or owner. (A new directory holds nothing new of its own batch: a client
    /// needs the MKDIR's reply before it can make anything in it.) Nil when a target needs the whole file system synced
    /// (`SyncTarget.filesystem`).
    static func syncOrder(_ targets: [SyncTarget], with first: SyncTarget? = nil) -> [[SyncTarget]]? {
        struct Key: Hashable {
            var dev: UInt64
            var ino: UInt64
        }
        var seen = Set<Key>()
        var inodes: [SyncTarget] = first.map { [$0] } ?? [], directories: [SyncTarget] = []
        for target in targets {
            let fd: FD
            switch target {
            case .filesystem: return nil
            case .file(let descriptor, _), .directory(let descriptor, _), .data(let descriptor, _): fd = descriptor
            }
            var st = stat()
            // The first sighting decides: a new directory first named as made, then as the parent of its entries.
            if Glibc.fstat(fd.raw, &st) == 0,
                !seen.insert(Key(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))).inserted
            {
                continue
            }
            if case .directory = target { directories.append(target) } else { inodes.append(target) }
        }
        return [inodes, directories].filter { !$0.isEmpty }
    }

    /// A syncfs of the sidecar's file system that starts after this call, shared with every other namespace on that
    /// file system: a syncfs writes back the whole file system, so one that started after a batch was committed
    /// covers that batch whichever namespace asked for it (a room of clients booting: one syncfs, not one each).
    private func syncFilesystem(_ fd: FD) throws(UnionError) {
        let (syncs, device) = self.sharedSyncfs.withLock { $0 }
        try syncs.sync(device) { () throws(UnionError) in try Files.syncFilesystem(fd, path: self.path) }
    }

    /// The syncfs calls of every namespace of this process, shared per file system (keyed by `st_dev`).
    static let filesystemSyncs = FileSyncs()

    /// Chooses how batches are made durable. With `.wholeFilesystem` the sidecar stops syncing its own WAL at each
    /// commit (each batch's syncfs does it, shared through `syncs`, keyed by the file system); the caller checks the
    /// sidecar lives on that file system. With `.eachObject` each batch fdatasyncs the WAL with its objects, and the
    /// syncfs of a batch that needs one is shared the same way.
    func useFilesystemSync(_ mode: FilesystemSync, syncs: FileSyncs = Sidecar.filesystemSyncs) throws(UnionError) {
        switch mode {
        case .wholeFilesystem(let fd), .eachObject(let fd):
            let st = try Files.fstat(fd, path: self.path)
            try self.commitWithoutSyncingWAL()
            self.sharedSyncfs.withLock { $0 = (syncs, UInt64(st.st_dev)) }
        case .orderedJournal:
            try self.commitWithoutSyncingWAL()
        case .none:
            break
        }
        self.filesystemSync.withLock { $0 = mode }
    }

    /// synchronous = NORMAL: a batch's commit leaves the WAL's sync to the batch's own syncs.
    private func commitWithoutSyncingWAL() throws(UnionError) {
        do {
            try self.queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        } catch {
            throw .sidecar("set synchronous in \(self.path): \(error)")
        }
    }

    static func sync(_ t: SyncTarget) throws(UnionError) {
        switch t {
        case .directory(let fd, let path): try Files.fsyncDirectory(fd, path: path)
        case .file(let fd, let path): _ = try Sys.retry("fsync", path) { fsync(fd.raw) }
        case .data(let fd, let path): _ = try Sys.retry("fdatasync", path) { fdatasync(fd.raw) }
        case .filesystem(let path): throw .invalid("no single fsync makes \(path) durable")
        }
    }

    /// One durable transaction, outside the group commit (open, repairs, tools). Its records are all it makes
    /// durable: the WAL's own sync suffices.
    func write<T>(_ what: String, _ body: (Database) throws -> T) throws(UnionError) -> T {
        if NoWaiting.isActive { throw NoWaiting.refuse() }
        return try self.transaction(what, syncingWAL: true, body)
    }

    /// `syncingWAL`: durable when it returns, also where batches run with synchronous = NORMAL (`.wholeFilesystem`):
    /// this one commit runs with FULL (an fdatasync of the WAL, which holds every earlier commit too).
    private func transaction<T>(
        _ what: String, syncingWAL: Bool = false, _ body: (Database) throws -> T
    ) throws(UnionError) -> T {
        do {
            let walSyncedByBatch: Bool
            switch self.filesystemSync.withLock({ $0 }) {
            case .wholeFilesystem, .eachObject, .orderedJournal: walSyncedByBatch = true
            case .none: walSyncedByBatch = false
            }
            guard syncingWAL, walSyncedByBatch else { return try self.queue.write(body) }
            return try self.queue.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                defer { try? db.execute(sql: "PRAGMA synchronous = NORMAL") }
                var result: T?
                try db.inTransaction {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch let unionError as UnionError {
            throw unionError
        } catch {
            throw .sidecar("\(what) in \(self.path): \(error)")
        }
    }

    func read<T>(_ what: String, _ body: (Database) throws -> T) throws(UnionError) -> T {
        // A flush holds the database through its syncs.
        if NoWaiting.isActive { throw NoWaiting.refuse() }
        do {
            return try self.queue.read(body)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
            throw Self.heldByServer("\(what) in \(self.path)")
        } catch {
            throw .sidecar("\(what) in \(self.path): \(error)")
        }
    }

    /// A read of a sidecar another process's namespace holds (`exclusiveLocking`): a server with the layer open.
    private static func heldByServer(_ what: String) -> UnionError {
        .sidecar(
            "\(what): a running server has the layer open (a client's namespace closes a minute after its UMNT): retry then, or stop the server"
        )
    }

    func close() {
        try? self.queue.close()
    }

    /// The directory-scoped records of a layer (whiteouts, opaque markers, redirects), loaded at once.
    func loadLayerRecords() throws(UnionError) -> LayerRecords {
        try self.read("load layer records", LayerRecords.load)
    }
}

/// In-memory mirror of a layer's directory-scoped sidecar records, keyed by directory inode.
struct LayerRecords: Sendable {
    var whiteouts: [UInt64: Set<[UInt8]>] = [:]
    var opaque: Set<UInt64> = []
    var redirects: [UInt64: [UInt8]] = [:]
    /// Records left out at load because a name in them could leave a directory (see `load`).
    var rejected = 0

    func isWhiteout(dirIno: UInt64, _ name: [UInt8]) -> Bool {
        self.whiteouts[dirIno]?.contains(name) ?? false
    }

    /// Reads the records. A sidecar is input like the wire (a lower's may come from anywhere): a whiteout name must
    /// be a valid name and a redirect a relative path of valid names (no `..`, `.`, empty component or leading `/`),
    /// else the record is left out (counted in `rejected`), so following a redirect never leaves the layers' roots.
    static func load(_ db: Database) throws -> LayerRecords {
        var records = LayerRecords()
        guard try db.tableExists(WhiteoutRecord.databaseTableName) else { return records }
        for whiteout in try WhiteoutRecord.fetchEvery(db) {
            let name = [UInt8](whiteout.name)
            guard Self.isValidName(name) else {
                records.rejected += 1
                continue
            }
            records.whiteouts[whiteout.dirIno, default: []].insert(name)
        }
        for opaque in try OpaqueRecord.fetchEvery(db) { records.opaque.insert(opaque.dirIno) }
        for redirect in try RedirectRecord.fetchEvery(db) {
            let path = [UInt8](redirect.path)
            guard Self.isValidRedirect(path) else {
                records.rejected += 1
                continue
            }
            records.redirects[redirect.dirIno] = path
        }
        return records
    }

    static func isValidName(_ name: [UInt8]) -> Bool {
        do throws(UnionError) {
            try Names.validate(name)
            return true
        } catch {
            return false
        }
    }

    /// A union path below the root: 1 to 4096 bytes, components split on every `/`, each a valid name.
    static func isValidRedirect(_ path: [UInt8]) -> Bool {
        guard !path.isEmpty, path.count <= 4096 else { return false }
        return path.split(separator: 0x2f, omittingEmptySubsequences: false).allSatisfy { Self.isValidName(Array($0)) }
    }
}

/// The empty, migrated sidecar new ones are copied from, made once.
final class SidecarTemplate: Sendable {
    private let made = Locked<[UInt8]?>(nil)
    /// Held while it is made. When a room of clients powers on, their first MNTs all found no template yet and each
    /// made its own (the migrations' CPU fifty times over: at N = 50 the storm's first 200 ms), where one makes it
    /// and the others wait for it, then copy it.
    private let building = Locked(0)

    /// How many times it was made (tests).
    var builds: Int { self.building.withLock { $0 } }

    /// The bytes, made at `scratch` + ".template" (removed after) by the first caller while the others wait.
    func bytes(configuration: Configuration, scratch: String) throws -> [UInt8] {
        if let made = self.made.withLock({ $0 }) { return made }
        return try self.building.withLock { builds in
            if let made = self.made.withLock({ $0 }) { return made }
            let path = scratch + ".template"
            let files = [path, path + "-wal", path + "-shm", path + "-journal"]
            for leftover in files { _ = unlink(leftover) }
            defer { for leftover in files { _ = unlink(leftover) } }
            try Sidecar.migrateEmpty(path, configuration: configuration)
            let bytes = try Sidecar.readFile(path)
            builds += 1
            self.made.withLock { $0 = bytes }
            return bytes
        }
    }
}
