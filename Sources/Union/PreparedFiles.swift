import Basics
import Glibc

// A new regular file's inode, taken before the namespace write lock (CREATE). Under the lock a change waits for every
// other change of the namespace; making the inode was the largest part of a CREATE held there (ext4 allocating it:
// a quarter of a CREATE's CPU in a profile of new files in new directories). The inode is nothing anyone can see
// until the locked step names it: an unnamed file (`O_TMPFILE`, gone with its descriptor) or a spare of work/ (a
// work/ leftover, removed at open). So it can be made, and given its owner and mode, before the lock; the locked step
// takes it only if the owner and mode it computes there, from the directory as it is then, are the ones it was
// made with, and otherwise makes one as before. One not taken (the name existed, a refusal, another owner) goes back
// among the spares, so that a refused CREATE frees no inode (`SpareInodes.swift` says why that matters).

struct PreparedFile: Sendable {
    enum Source: Sendable {
        /// A spare of work/ by that number (`SpareInodes.name`; owner, mode and times set by `takeSpare`).
        case spare(UInt64)
        /// An unnamed file, linked as `Linking` says; its stat after owner and mode were set.
        case unnamed(UnnamedFiles.Linking, stat)
    }

    var source: Source
    /// Open for writing.
    var file: FD
    var uid: UInt32
    var gid: UInt32
    var mode: UInt32

    func isMade(for own: (uid: UInt32, gid: UInt32, mode: UInt32)) -> Bool {
        self.uid == own.uid && self.gid == own.gid && self.mode == own.mode
    }
}

extension UnionNamespace {
    /// The inode a CREATE of `name` in directory `dirH` by `cred` will most likely need, made before the namespace
    /// lock from the node cache's view of the directory; nil when that view cannot say (the directory not cached or
    /// not in the upper yet, no write permission, the name known to exist) or the inode cannot be made now: the
    /// locked step then does it all, and reports what fails. Nothing here changes what a client can see.
    func prepareNewFile(
        in dirH: ObjectHandle, _ name: [UInt8], requestedMode: UInt32, as cred: Credentials
    ) -> PreparedFile? {
        guard let upper = self.upper, !self.isClosed.load(ordering: .relaxed),
            dirH.tag == self.identities.handleKey.tag(dirH.fileid),
            let dir = self.nodeCache.withLock({ $0.get(dirH.fileid) }), dir.isDirectory, self.isUpper(dir.top),
            let parentFD = dir.top.dir,
            Permission.allows(dir.top.st, cred, Permission.exec | Permission.write)
        else { return nil }
        let generation = self.namesGeneration.load(ordering: .acquiring)
        if case .some(.some) = self.lookups.withLock({ $0.get(dir.fileid, name, generation: generation) }) {
            return nil  // an existing name: a CREATE of it makes nothing
        }
        let own = self.newOwnership(dir.top.st, cred, requestedMode, isDirectory: false)
        if let spare = self.takeSpare(uid: own.uid, gid: own.gid, mode: own.mode) {
            self.stats.preparedFiles.add(1, ordering: .relaxed)
            return PreparedFile(
                source: .spare(spare.number), file: spare.fd, uid: own.uid, gid: own.gid, mode: own.mode)
        }
        let path = Names.join(dir.top.path, name).displayString
        do throws(UnionError) {
            guard let made = try self.unnamedFile(in: parentFD, upper, mode: own.mode, path: path) else { return nil }
            var (st, changed) = try self.giveOwnerAndMode(made.file, own, path: path)
            if changed { st = try Files.fstat(made.file, path: path) }
            self.stats.preparedFiles.add(1, ordering: .relaxed)
            return PreparedFile(
                source: .unnamed(made.linking, st), file: made.file, uid: own.uid, gid: own.gid, mode: own.mode)
        } catch {
            return nil
        }
    }

    /// A prepared inode its CREATE did not take: kept as a spare where REMOVE keeps them (an unnamed one is linked
    /// into work/ for that), else let go.
    func release(_ prepared: PreparedFile) {
        guard let upper = self.upper, !self.isClosed.load(ordering: .relaxed) else { return }
        switch prepared.source {
        case .spare(let number):
            self.spareInodes.withLock { $0.append(number) }
        case .unnamed(let linking, _):
            guard self.keepsSpareInodes, self.spareInodes.withLock({ $0.count < SpareInodes.limit }) else {
                return  // its descriptor goes with it, and the kernel frees the inode
            }
            let number = WorkNames.nextNumber()
            do throws(UnionError) {
                try UnnamedFiles.link(prepared.file, upper.work, SpareInodes.name(number), path: "work", linking)
                self.spareInodes.withLock { $0.append(number) }
            } catch {
                return
            }
        }
    }
}
