import Basics
import Foundation
import GRDB
import Glibc
import Testing

@testable import Union

/// A new sidecar is made under a temporary name and renamed into place whole.
@Suite struct SidecarCreationTests {
    /// Opens a namespace on `upper`, makes the directory `d` in it and closes it; the names then in `upper`.
    static func makeDirectoryAndClose(_ upper: String) throws -> [String] {
        let u = try UnionNamespace(upper: upper, lowers: [], logger: .init(label: "t"))
        _ = try u.mkdir(in: u.rootHandle, Array("d".utf8), attributes: .init(), as: root)
        u.close()
        return try FileManager.default.contentsOfDirectory(atPath: upper)
    }

    @Test func aNewSidecarIsCompleteAndLeavesNoTemporaryFiles() throws {
        let f = Fixture()
        let upper = f.base + "/upper"
        let names = try Self.makeDirectoryAndClose(upper)
        #expect(!names.contains { $0.hasPrefix("layer.db.new") }, "\(names)")
        // Every migration was applied (a Strata layer's format row is the last one).
        #expect(try LayerFormat.isStrataLayer(upper))
        let reopened = try UnionNamespace(upper: upper, lowers: [], logger: .init(label: "t"))
        defer { reopened.close() }
        #expect(try reopened.lookup(reopened.rootHandle, Array("d".utf8), as: root).1.type == .directory)
    }

    /// A database made as SQLite makes them by default (4,096-byte pages), as sidecars were before `Sidecar.pageSize`.
    static func makeSidecarWithDefaultPages(_ path: String) throws {
        let old = try DatabaseQueue(path: path)
        try old.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "CREATE TABLE scratch (x)")
        }
        try old.close()
    }

    /// New sidecars are made with small pages (`Sidecar.pageSize`: a transaction writes each page it changed whole to
    /// the WAL); a sidecar made before with SQLite's default keeps its pages, migrated in place like any other.
    @Test func newSidecarsHaveSmallPagesAndOldOnesKeepTheirs() throws {
        let f = Fixture()
        let fresh = try Sidecar(path: f.base + "/fresh.db", readOnly: false)
        let freshPages = try fresh.read("page size") { db in try Int.fetchOne(db, sql: "PRAGMA page_size") }
        fresh.close()
        #expect(freshPages == Sidecar.pageSize)
        #expect(Sidecar.pageSize == 1024)

        let oldPath = f.base + "/old.db"
        try Self.makeSidecarWithDefaultPages(oldPath)
        let reopened = try Sidecar(path: oldPath, readOnly: false)
        defer { reopened.close() }
        let oldPages = try reopened.read("page size") { db in try Int.fetchOne(db, sql: "PRAGMA page_size") }
        #expect(oldPages == 4096)
    }

    /// The WAL is checkpointed at `Sidecar.walCheckpointBytes` whatever the page size (SQLite's default of 1,000
    /// pages would be 1 MiB with ours, a checkpoint with two fdatasyncs every few dozen batches).
    @Test func theWALIsCheckpointedAtTheSameSizeWhateverThePageSize() throws {
        let f = Fixture()
        let fresh = try Sidecar(path: f.base + "/fresh.db", readOnly: false)
        let freshPages = try fresh.read("checkpoint") { db in try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") }
        fresh.close()
        #expect(Sidecar.walCheckpointBytes == 8 << 20)
        #expect(freshPages == Sidecar.walCheckpointBytes / 1024)

        let oldPath = f.base + "/old.db"
        try Self.makeSidecarWithDefaultPages(oldPath)
        let reopened = try Sidecar(path: oldPath, readOnly: false)
        defer { reopened.close() }
        let oldPages = try reopened.read("checkpoint") { db in try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") }
        #expect(oldPages == Sidecar.walCheckpointBytes / 4096)
    }

    /// An open namespace holds its sidecar exclusively (no `-shm` file for `syncfs` to write back), and a reader of
    /// the live layer (`strata layer inspect`) still sees what was committed to the WAL, through a copy.
    @Test func aLiveSidecarIsHeldExclusivelyAndStillReadableThroughACopy() throws {
        let f = Fixture()
        let upper = f.base + "/upper"
        let u = try UnionNamespace(upper: upper, lowers: [], logger: .init(label: "t"))
        defer { u.close() }
        _ = try u.mkdir(in: u.rootHandle, Array("d".utf8), attributes: .init(), as: root)
        #expect(access(upper + "/layer.db-shm", F_OK) != 0, "a -shm file beside a sidecar held exclusively")
        #expect(access(upper + "/layer.db-wal", F_OK) == 0)
        let named = try LayerFormat.withStrataSidecar(upper) { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM identity WHERE name = ?", arguments: [Data("d".utf8)])
        }
        #expect(named == 1, "the live sidecar's WAL was not read")
        let left = try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()).filter {
            $0.hasPrefix("strata-layer-")
        }
        #expect(left.isEmpty, "copies left behind: \(left)")
        // A direct reader (`strata layer promote` right after the client unmounted) is told why and what to do.
        #expect {
            let reader = try Sidecar(path: upper + "/layer.db", readOnly: true)
            defer { reader.close() }
            _ = try reader.loadLayerRecords()
        } throws: { error in
            "\(error)".contains("a running server has the layer open")
        }
    }

    /// A crash during a creation leaves only `layer.db.new` (and its WAL): the next open removes it and makes the
    /// sidecar afresh; the leftover is never taken for the sidecar.
    @Test func theLeftoverOfAnInterruptedCreationIsRemoved() throws {
        let f = Fixture()
        let upper = f.base + "/upper"
        try FileManager.default.createDirectory(atPath: upper, withIntermediateDirectories: true)
        for name in ["layer.db.new", "layer.db.new-wal", "layer.db.new-shm"] {
            #expect(FileManager.default.createFile(atPath: upper + "/" + name, contents: Data("torn".utf8)))
        }
        let names = try Self.makeDirectoryAndClose(upper)
        #expect(!names.contains { $0.hasPrefix("layer.db.new") }, "\(names)")
        #expect(try LayerFormat.isStrataLayer(upper))
    }
}

/// The empty, migrated sidecar new ones are copied from (`SidecarTemplate`): made once however many first MNTs ask
/// for it at once, and made where nothing of it is left.
@Suite struct SidecarTemplateTests {
    @Test func concurrentFirstCreationsMakeTheTemplateOnce() throws {
        let f = Fixture()
        let template = SidecarTemplate()
        let results = Locked<[[UInt8]]>([])
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            do {
                let bytes = try template.bytes(configuration: Configuration(), scratch: f.base + "/c\(i)")
                results.withLock { $0.append(bytes) }
            } catch {
                failures.withLock { $0.append("\(i): \(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        #expect(template.builds == 1)
        let all = results.withLock { $0 }
        #expect(all.count == 16 && Set(all).count == 1 && !all[0].isEmpty)
        let left = try FileManager.default.contentsOfDirectory(atPath: f.base).filter { $0.hasPrefix("c") }
        #expect(left.isEmpty, "the template's scratch files stay behind: \(left)")
    }

    /// A server prepares it before it listens, in its state directory, and leaves nothing there.
    @Test func preparingTheTemplateLeavesNothingBehind() throws {
        let f = Fixture()
        let directory = f.base + "/state"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try UnionNamespace.prepareUpperCreation(scratch: directory)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    /// A process stopped while it made the template in a new upper leaves `layer.db.new.template`: the next
    /// creation of that upper removes it.
    @Test func aTemplateCutShortInAnUpperIsRemovedByItsCreation() throws {
        let f = Fixture()
        let upper = f.base + "/upper"
        try FileManager.default.createDirectory(atPath: upper, withIntermediateDirectories: true)
        for name in ["layer.db.new.template", "layer.db.new.template-wal"] {
            #expect(FileManager.default.createFile(atPath: upper + "/" + name, contents: Data("torn".utf8)))
        }
        let names = try SidecarCreationTests.makeDirectoryAndClose(upper)
        #expect(!names.contains { $0.hasPrefix("layer.db.new") }, "\(names)")
    }
}

/// A new upper is made whole for its first open (`UnionNamespace.createUpper`): its sidecar from the process's
/// template, with the records an open would otherwise write.
@Suite struct UpperCreationTests {
    /// The schema and migrations of a sidecar copied from the template are those the migrator makes.
    @Test func aSidecarMadeFromTheTemplateHasTheMigratedSchema() throws {
        let f = Fixture()
        // Two uppers: the first may build the template, the second is certainly a copy of it.
        for name in ["first", "second"] {
            let u = try UnionNamespace(upper: f.base + "/" + name, lowers: [], logger: .init(label: "t"))
            u.close()
        }
        let migrated = try DatabaseQueue(path: f.base + "/migrated.db")
        try SidecarMigrations.migrator.migrate(migrated)
        func schema(_ queue: DatabaseQueue) throws -> [String] {
            try queue.read { db in
                try String.fetchAll(
                    db, sql: "SELECT type || ' ' || name || ' ' || IFNULL(sql, '') FROM sqlite_master ORDER BY name")
                    + String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier")
            }
        }
        let expected = try schema(migrated)
        for name in ["first", "second"] {
            let queue = try DatabaseQueue(path: f.base + "/" + name + "/layer.db")
            #expect(try schema(queue) == expected, "\(name)")
            try queue.close()
        }
    }

    /// Every upper made from the template gets its own secrets, and its stack recorded: reopening it with the same
    /// lowers has nothing to write.
    @Test func eachNewUpperHasItsOwnSecretsAndItsStackRecorded() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/etc/hostname", "base")
        var keys: Set<[Int64]> = []
        for i in 0..<4 {
            let upper = f.base + "/upper\(i)"
            let u = try UnionNamespace(upper: upper, lowers: [f.lower(0)], logger: .init(label: "t"))
            #expect(
                try UnionNamespace.recordsStack(
                    u.identities.sidecar, signature: UnionNamespace.stackSignature([f.lower(0)]),
                    lowerPaths: [UnionNamespace.realPath(f.lower(0))]))
            u.close()
            let queue = try DatabaseQueue(path: upper + "/layer.db")
            keys.insert(
                try queue.read { db in
                    try Int64.fetchAll(
                        db, sql: "SELECT value FROM meta WHERE key IN ('cookieKey0', 'cookieKey1') ORDER BY key")
                })
            try queue.close()
        }
        #expect(keys.count == 4, "new uppers share a cookie key: \(keys)")
        #expect(keys.allSatisfy { $0.count == 2 })
    }

    /// A crash after `tree/` was made and before the sidecar was renamed into place: the next open finishes the
    /// creation, the root's owner and mode taken from the top lower's root as a creation in one go takes them.
    @Test func anUpperLeftWithoutItsSidecarIsFinishedWithTheLowerRootsMode() throws {
        let f = Fixture()
        f.mkdir(f.lower(0), mode: 0o751)
        f.file(f.lower(0) + "/etc/hostname", "base")
        f.mkdir(f.upper, mode: 0o755)
        f.mkdir(f.upper + "/tree", mode: 0o700)  // as mkdir left it, before the owner and mode were copied
        #expect(FileManager.default.createFile(atPath: f.upper + "/layer.db.new", contents: Data("torn".utf8)))
        let u = try UnionNamespace(upper: f.upper, lowers: [f.lower(0)], logger: .init(label: "t"))
        defer { u.close() }
        #expect(try u.getattr(u.rootHandle).mode & 0o7777 == 0o751)
        var st = stat()
        #expect(stat(f.upper + "/tree", &st) == 0 && st.st_mode & 0o7777 == 0o751)
        #expect(!f.exists(f.upper + "/layer.db.new"))
        #expect(try LayerFormat.isStrataLayer(f.upper))
    }

    /// A tree/ with entries and no sidecar was not left by a creation: its root keeps its metadata.
    @Test func aTreeWithEntriesKeepsItsRootsMode() throws {
        let f = Fixture()
        f.mkdir(f.lower(0), mode: 0o751)
        f.mkdir(f.upper + "/tree", mode: 0o700)
        f.file(f.upper + "/tree/kept", "mine")
        let u = try UnionNamespace(upper: f.upper, lowers: [f.lower(0)], logger: .init(label: "t"))
        defer { u.close() }
        var st = stat()
        #expect(stat(f.upper + "/tree", &st) == 0 && st.st_mode & 0o7777 == 0o700)
    }

    /// A spare upper (`makeSpareUpper`) taken by a first open is renamed into place, whole: its root takes the top
    /// lower's root's mode as it is at the claim (changed since the spare was made), and what is made in it stays
    /// across a reopen with its fileid.
    @Test func aSpareTakenByAFirstOpenBecomesTheUpper() throws {
        let f = Fixture()
        f.mkdir(f.lower(0), mode: 0o755)
        f.file(f.lower(0) + "/etc/hostname", "base")
        let spare = f.base + "/.spare-1"
        try UnionNamespace.makeSpareUpper(spare, lowers: [f.lower(0)], shared: nil, logger: .init(label: "t"))
        #expect(UnionNamespace.isCompleteSpare(spare))
        #expect(chmod(f.lower(0), 0o751) == 0)
        f.mkdir(f.upper, mode: 0o700)  // the empty directory the server makes for a new client's upper
        let u = try UnionNamespace(
            upper: f.upper, lowers: [f.lower(0)], stateDirectory: nil, cachedObjects: 64, logger: .init(label: "t"),
            spareUpper: spare)
        #expect(!f.exists(spare))
        #expect(try u.getattr(u.rootHandle).mode & 0o7777 == 0o751)
        let etc = try u.lookup(u.rootHandle, Array("etc".utf8), as: root).0
        let (made, _) = try u.create(
            in: etc, Array("mine".utf8), mode: .guarded, attributes: .init(mode: 0o644), as: root)
        u.close()
        let reopened = try UnionNamespace(upper: f.upper, lowers: [f.lower(0)], logger: .init(label: "t"))
        defer { reopened.close() }
        let etcAgain = try reopened.lookup(reopened.rootHandle, Array("etc".utf8), as: root).0
        #expect(try reopened.lookup(etcAgain, Array("mine".utf8), as: root).0.fileid == made.fileid)
    }

    /// An upper's directory is the server's alone (0700, whatever the umask): made at a first open, made as a spare,
    /// and a spare an older server made with the umask's mode, brought to 0700 when it is claimed. The claim needs no
    /// directory at the upper's name first.
    @Test func uppersAndSparesAreTheServersAlone() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/etc/hostname", "base")
        func mode(_ path: String) -> mode_t {
            var st = stat()
            return stat(path, &st) == 0 ? st.st_mode & 0o7777 : 0
        }
        let made = try UnionNamespace(upper: f.upper, lowers: [f.lower(0)], logger: .init(label: "t"))
        made.close()
        #expect(mode(f.upper) == 0o700)
        let spare = f.base + "/uppers/.spare-1"
        try UnionNamespace.makeSpareUpper(spare, lowers: [f.lower(0)], shared: nil, logger: .init(label: "t"))
        #expect(mode(spare) == 0o700)
        #expect(chmod(spare, 0o755) == 0)  // as an older server left it
        let claimed = try UnionNamespace(
            upper: f.base + "/uppers/c1", lowers: [f.lower(0)], stateDirectory: nil, cachedObjects: 64,
            logger: .init(label: "t"), spareUpper: spare)
        defer { claimed.close() }
        #expect(!f.exists(spare))
        #expect(mode(f.base + "/uppers/c1") == 0o700)
        #expect(try claimed.lookup(claimed.rootHandle, Array("etc".utf8), as: root).1.type == .directory)
    }

    /// First MNTs at once, each taking its own spare: every client gets a working upper of its own (their directory
    /// fsyncs shared), no spare is taken twice, and each keeps what was made in it across a reopen.
    @Test func concurrentClaimsEachGetTheirOwnSpare() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/etc/hostname", "base")
        let clients = 16
        for i in 0..<clients {
            try UnionNamespace.makeSpareUpper(
                f.base + "/uppers/.spare-\(i)", lowers: [f.lower(0)], shared: nil, logger: .init(label: "t"))
        }
        try Self.firstOpensAtOnce(f, clients: clients) { i in
            try UnionNamespace(
                upper: f.base + "/uppers/c\(i)", lowers: [f.lower(0)], stateDirectory: nil, cachedObjects: 64,
                logger: .init(label: "t"), spareUpper: f.base + "/uppers/.spare-\(i)")
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: f.base + "/uppers").filter { $0.hasPrefix(".") }
        #expect(left.isEmpty, "\(left)")
    }

    /// A spare is taken only over an absent or empty upper, and only whole: an unfinished creation (entries in
    /// `tree/`, no sidecar) is finished as before, and a spare cut short (no sidecar) is never taken.
    @Test func aSpareIsNotTakenOverAnUnfinishedUpperNorWhenCutShort() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/etc/hostname", "base")
        let spare = f.base + "/.spare-1"
        try UnionNamespace.makeSpareUpper(spare, lowers: [f.lower(0)], shared: nil, logger: .init(label: "t"))
        f.file(f.upper + "/tree/kept", "mine")
        let u = try UnionNamespace(
            upper: f.upper, lowers: [f.lower(0)], stateDirectory: nil, cachedObjects: 64, logger: .init(label: "t"),
            spareUpper: spare)
        #expect(f.exists(spare + "/layer.db"), "the spare was left as it was")
        #expect(try u.lookup(u.rootHandle, Array("kept".utf8), as: root).1.type == .regular)
        u.close()
        let cutShort = f.base + "/.spare-2"
        f.mkdir(cutShort + "/tree")
        let other = f.base + "/other"
        let v = try UnionNamespace(
            upper: other, lowers: [f.lower(0)], stateDirectory: nil, cachedObjects: 64, logger: .init(label: "t"),
            spareUpper: cutShort)
        defer { v.close() }
        #expect(f.exists(cutShort + "/tree") && !f.exists(cutShort + "/layer.db"))
        #expect(try LayerFormat.isStrataLayer(other))
    }

    /// A room powering on: many first opens at once, each of its own upper, each a working, distinct upper that
    /// keeps what was written in it across a reopen.
    @Test func concurrentFirstOpensEachGetAWorkingDistinctUpper() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/etc/hostname", "base")
        try Self.firstOpensAtOnce(f, clients: 32) { i in
            try UnionNamespace(upper: f.base + "/uppers/c\(i)", lowers: [f.lower(0)], logger: .init(label: "t"))
        }
    }

    /// `clients` first opens at once (`open(i)` makes client i's namespace of upper `uppers/c<i>`), each creating a
    /// file of its own in /etc; then each upper, reopened, holds its own file and not its neighbour's.
    static func firstOpensAtOnce(
        _ f: Fixture, clients: Int, open: @Sendable (Int) throws -> UnionNamespace
    ) throws {
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: clients) { i in
            do {
                let u = try open(i)
                defer { u.close() }
                let etc = try u.lookup(u.rootHandle, Array("etc".utf8), as: root).0
                _ = try u.create(
                    in: etc, Array("client-\(i)".utf8), mode: .guarded, attributes: .init(mode: 0o644), as: root)
            } catch {
                failures.withLock { $0.append("client \(i): \(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        for i in 0..<clients {
            let u = try UnionNamespace(upper: f.base + "/uppers/c\(i)", lowers: [f.lower(0)], logger: .init(label: "t"))
            defer { u.close() }
            let etc = try u.lookup(u.rootHandle, Array("etc".utf8), as: root).0
            #expect(try u.lookup(etc, Array("client-\(i)".utf8), as: root).1.type == .regular)
            let other = Array("client-\((i + 1) % clients)".utf8)
            #expect(throws: UnionError.noEntry) { try u.lookup(etc, other, as: root) }
        }
    }
}

/// Extended attributes at copy-up: copied, overlayfs' markers left out, and a failure to store one is an error
/// (only a destination refusing an attribute, EPERM/ENOTSUP, is skipped).
@Suite struct CopyXattrTests {
    @Test func attributesAreCopiedAndOverlayMarkersLeftOut() throws {
        let f = Fixture()
        f.file(f.base + "/source", "data")
        f.file(f.base + "/destination", "")
        f.setXattr(f.base + "/source", "user.kept", "yes")
        f.setXattr(f.base + "/source", "user.overlay.origin", "x")
        let from = FD(open(f.base + "/source", O_RDONLY | O_CLOEXEC))
        let to = FD(open(f.base + "/destination", O_RDWR | O_CLOEXEC))
        try FileCopy.copyXattrs(from: from, to: to)
        #expect(f.getXattr(f.base + "/destination", "user.kept") == "yes")
        #expect(f.getXattr(f.base + "/destination", "user.overlay.origin") == nil)
    }

    @Test func aDestinationThatCannotStoreThemFailsTheCopy() throws {
        let f = Fixture()
        f.file(f.base + "/source", "data")
        f.setXattr(f.base + "/source", "user.kept", "yes")
        let from = FD(open(f.base + "/source", O_RDONLY | O_CLOEXEC))
        let closed = FD(-1)  // EBADF: an error other than a refusal, which the old copy ignored
        #expect(throws: UnionError.self) { try FileCopy.copyXattrs(from: from, to: closed) }
    }
}
