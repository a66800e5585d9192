import Basics
import Foundation
import GRDB
import Glibc
import Logging

/// The first open of an upper layer, and what an open reads instead of writing (Docs/CRASH-ORDER.md, "Opening").
extension UnionNamespace {
    /// Makes the upper layer `upper` for its first open: `tree/` with the metadata of the top-most lower's root (what
    /// the union showed), `work/`, `index/`, then its sidecar, made whole and renamed into place
    /// (`Sidecar.create`) with the records an open would otherwise write (cookie key, the stack): the sidecar is the
    /// last step, so an upper without one is an unfinished creation and is finished here, its root's metadata
    /// included (a crash between the `mkdir` of `tree/` and the copy of the root's owner must not leave the
    /// server's owner and mode on the root). Everything is flushed before the sidecar's rename (`tree/`, whose
    /// owner changed) and after it (the upper's directory, by `Sidecar.create`, and the entry of the upper in its
    /// parent): a client's upper survives a crash once its MNT has been answered, without a `syncfs` of the whole
    /// file system per client (a storm of first mounts made hundreds).
    ///
    /// The sidecar is also made with everything its first open would write: the namespace id, the handle key, the
    /// root's identity (fileid 1) with the first fileid reservation, and the shared identity store it takes lower
    /// fileids from: that open writes nothing (`IdentityStore.init(fresh:)`).
    static func createUpper(
        _ upper: String, lowers: [String], shared: SharedIdentities? = nil, logger: Logger
    ) throws(UnionError) {
        // An existing `tree/` with entries and no sidecar was not made here (a sidecar lost by hand): its root keeps
        // its metadata.
        var treeIsNew = true
        if try Files.statAbsolute(upper + "/tree", followingLinks: true) != nil {
            treeIsNew = try Files.list(try Files.openDirectoryAbsolute(upper + "/tree"), path: upper + "/tree").isEmpty
        }
        try Self.makeUpperDirectory(upper)
        try Files.mkdirAll(upper + "/tree")
        try Files.mkdirAll(upper + "/work", mode: 0o700)
        try Files.mkdirAll(upper + "/index", mode: 0o700)
        let tree = try Files.openDirectoryAbsolute(upper + "/tree")
        if treeIsNew, let first = lowers.first {
            _ = try Self.giveRootTheLowerRootsOwner(tree, treePath: upper + "/tree", lower: first, logger: logger)
        }
        try Files.fsyncDirectory(tree, path: upper + "/tree")
        let rootIno = UInt64(try Files.fstat(tree, path: upper + "/tree").st_ino)
        let handleKey = HandleKey.random()
        let namespaceID = UInt64.random(in: 1...UInt64(Int64.max))
        let key = CookieKey.random()
        let signature = Self.stackSignature(lowers)
        let lowerPaths = lowers.map(Self.realPath)
        do {
            var configuration = Configuration()
            configuration.label = "strata.sidecar"
            try Sidecar.create(upper + "/layer.db", configuration: configuration) { db in
                try key.store(db)
                try Self.recordStack(db, signature: signature, lowerPaths: lowerPaths)
                try MetaRecord(key: "namespaceID", value: namespaceID).save(db)
                try MetaRecord(key: "handleKey0", value: handleKey.k0).save(db)
                try MetaRecord(key: "handleKey1", value: handleKey.k1).save(db)
                try MetaRecord(key: "fileidReserved", value: IdentityStore.reservationChunk).save(db)
                try IdentityStore.insert(
                    IdentityRecord(
                        fileid: 1, parent: 0, name: Data(), originLayer: 0, originIno: rootIno, upperIno: rootIno,
                        isIndexed: false, lowerLinkCount: 1), db)
                if let shared { try IdentityStore.recordShared(shared, db) }
            }
        } catch let error as UnionError {
            throw error
        } catch {
            throw .sidecar("create \(upper)/layer.db: \(error)")
        }
        try Self.syncDirectoryHolding(upper)
    }

    /// Who may enter an upper layer's directory: the server alone. It holds a client's files as the client left them
    /// (copies of its `/etc`, its home directories); the modes inside are the client's, not meant for the server's
    /// own users.
    static let upperDirectoryMode: mode_t = 0o700

    /// The directory of a new upper, `upperDirectoryMode` (its parents as `mkdir -p` makes them); one already there
    /// keeps its mode.
    static func makeUpperDirectory(_ upper: String) throws(UnionError) {
        let parent = (upper as NSString).deletingLastPathComponent
        if !parent.isEmpty { try Files.mkdirAll(parent) }
        if Glibc.mkdir(upper, Self.upperDirectoryMode) == 0 {
            // mkdir(2) applied the umask.
            if Glibc.chmod(upper, Self.upperDirectoryMode) != 0 { throw Sys.error(errno, "chmod", upper) }
        } else if errno != EEXIST {
            throw Sys.error(errno, "mkdir", upper)
        }
    }

    /// The fsyncs of the directories holding uppers, shared by the first MNTs that make or claim uppers in one
    /// directory at once: each needs one that started after its rename, and one directory fsync writes every entry
    /// made before it (a room of 200 first MNTs made 200 fsyncs of one directory, one after another).
    static let upperDirectorySyncs = FileSyncs()

    /// Makes the entry of `upper` in its directory durable, with a flush shared as `upperDirectorySyncs` says.
    static func syncDirectoryHolding(_ upper: String) throws(UnionError) {
        let parent = (upper as NSString).deletingLastPathComponent
        let directory = try Files.openDirectoryAbsolute(parent.isEmpty ? "." : parent)
        let st = try Files.fstat(directory, path: parent)
        let key = UInt64(st.st_dev) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(st.st_ino)
        try Self.upperDirectorySyncs.sync(key) { () throws(UnionError) in
            try Files.fsyncDirectory(directory, path: parent)
        }
    }

    /// Makes a spare upper at `path`: an upper made whole for `lowers` (as a first open makes one, every step durable)
    /// under a name no client has, so that a new client's first MNT takes it (`claimSpare`) instead of making its own:
    /// one rename and one directory flush on the MNT's path instead of the creation's chain of flushes and its
    /// sidecar's making. It is as fresh as a new upper: nothing was handed out from it.
    public static func makeSpareUpper(
        _ path: String, lowers: [String], shared: SharedIdentities?, logger: Logger
    ) throws(UnionError) {
        let shared = shared.flatMap { $0.signature == Self.stackSignature(lowers) ? $0 : nil }
        try Self.createUpper(path, lowers: lowers, shared: shared, logger: logger)
    }

    /// What a spare's name records of the lowers it was made for: the signature of their real paths, in order (the
    /// stack its sidecar records).
    public static func stackFingerprint(_ lowers: [String]) -> UInt64 { Self.stackSignature(lowers) }

    /// True if `path` is a spare upper made whole (its sidecar renamed into place): one cut short by a crash is not.
    public static func isCompleteSpare(_ path: String) -> Bool {
        (try? Files.statAbsolute(path + "/layer.db", followingLinks: false)) != nil
    }

    /// Makes `upper` from the spare `spare` (`makeSpareUpper`, for these `lowers`, in the same directory as `upper`):
    /// the root's owner and mode brought to the top-most lower's root as it is now (it may have changed since the
    /// spare was made; flushed if so), then one `rename` over `upper` (absent, or an empty directory) and one flush of
    /// the directory holding both names. The rename is the commit point: a crash before it leaves the spare (a spare
    /// again at the next start) and no upper, after it the upper, whole. False, the spare left as it was, when it is
    /// not whole or `upper` holds something (an unfinished creation, finished instead).
    static func claimSpare(
        _ spare: String, as upper: String, lowers: [String], logger: Logger
    ) throws(UnionError)
        -> Bool
    {
        guard Self.isCompleteSpare(spare) else { return false }
        // A spare made before uppers were made `upperDirectoryMode` (by an older server) is brought to it first.
        let directory = try Files.openDirectoryAbsolute(spare)
        if try Files.fstat(directory, path: spare).st_mode & 0o7777 != Self.upperDirectoryMode {
            _ = try Sys.retry("fchmod", spare) { fchmod(directory.raw, Self.upperDirectoryMode) }
            try Files.fsyncDirectory(directory, path: spare)
        }
        if let first = lowers.first {
            let tree = try Files.openDirectoryAbsolute(spare + "/tree")
            if try Self.giveRootTheLowerRootsOwner(tree, treePath: spare + "/tree", lower: first, logger: logger) {
                try Files.fsyncDirectory(tree, path: spare + "/tree")
            }
        }
        if Glibc.rename(spare, upper) != 0 {
            let error = errno
            if error == ENOTEMPTY || error == EEXIST { return false }
            throw Sys.error(error, "rename (a spare upper into place)", upper)
        }
        try Self.syncDirectoryHolding(upper)
        return true
    }

    /// Gives a new upper's root (`tree`) the owner and mode of the top-most lower's root, what the union showed before
    /// the upper existed; true if it changed them (the caller flushes). A server without the privilege to give it away
    /// keeps its own owner: logged, not fatal.
    private static func giveRootTheLowerRootsOwner(
        _ tree: FD, treePath: String, lower first: String, logger: Logger
    ) throws(UnionError) -> Bool {
        let lowerRoot = try Files.openDirectoryAbsolute(
            (try? LayerFormat.isStrataLayer(first)) == true ? first + "/tree" : first)
        let want = try Files.fstat(lowerRoot, path: first)
        let have = try Files.fstat(tree, path: treePath)
        do throws(UnionError) {
            return try Files.setOwnerAndMode(
                tree, from: have, uid: want.st_uid, gid: want.st_gid, mode: UInt32(want.st_mode), path: treePath)
        } catch {
            logger.warning(
                "the new upper's root keeps its own owner or mode instead of the top lower's",
                metadata: ["upper": "\(treePath)", "lower": "\(first)", "error": "\(error)"])
            return true
        }
    }

    /// Does now, once per process, what the first upper's creation would otherwise do on a client's MNT: the empty,
    /// migrated sidecar every new upper's is copied from. `scratch` is a directory the server may write in (nothing
    /// is left there).
    public static func prepareUpperCreation(scratch: String) throws(UnionError) {
        try Sidecar.prepareTemplate(in: scratch)
    }

    /// Records the lower stack a new sidecar is made for, as `IdentityStore.checkStack` records it.
    static func recordStack(_ db: Database, signature: UInt64, lowerPaths: [String]) throws {
        for (index, path) in lowerPaths.enumerated() {
            try db.execute(
                sql: "INSERT INTO lowerLayer (position, path) VALUES (?, ?)", arguments: [index + 1, Data(path.utf8)])
        }
        try MetaRecord(key: "lowerStack", value: signature).save(db)
    }

    /// True if the sidecar already records exactly this stack (`checkStack` would change nothing).
    static func recordsStack(_ sidecar: Sidecar, signature: UInt64, lowerPaths: [String]) throws(UnionError) -> Bool {
        try sidecar.read("read the recorded layer stack") { db in
            guard try db.tableExists("lowerLayer") else { return false }
            let recorded = try Row.fetchAll(db, sql: "SELECT path FROM lowerLayer ORDER BY position").map {
                (r: Row) -> Data in r["path"]
            }
            let stack = try MetaRecord.fetchOne(db, named: "lowerStack")
            return stack?.value == signature && recorded == lowerPaths.map { Data($0.utf8) }
        }
    }
}
