import Basics
import Glibc

// CREATE, MKDIR, SYMLINK, MKNOD. Crash order (Docs/CRASH-ORDER.md): the object is made under work/ with the caller's
// ownership and mode (a crash: a work/ leftover), then renamed into place (a regular file: made unnamed in its own
// directory and linked, unless it takes a spare inode); its identity record and the parent's sync
// go to the group commit, waited for after the namespace lock is released. A whiteout on the name is dropped only
// in a later batch, once the entry that beats it is durable. MKDIR over a whiteout makes the new directory opaque,
// durable before it becomes visible, so `rm -rf d; mkdir d` shows an empty `d`.

enum NewObject {
    case regular
    case directory
    case symlink([UInt8])
    case node(FileType, DeviceNumber)
}

extension UnionNamespace {
    /// Mode and owner of a new object in directory `dir` for `cred`, as the kernel's `vfs_prepare_mode` and
    /// `inode_init_owner`: a directory never takes set-uid/set-gid from the request, only set-gid from a set-gid
    /// parent (with its group); a file keeps a requested set-gid unless it is group-executable, goes to the group of
    /// a set-gid parent and the caller is not in that group (`mode_strip_sgid`).
    func newOwnership(
        _ dir: stat, _ cred: Credentials, _ requestedMode: UInt32, isDirectory: Bool
    ) -> (
        uid: UInt32, gid: UInt32, mode: UInt32
    ) {
        let parentSetgid = UInt32(dir.st_mode) & UInt32(S_ISGID) != 0
        let gid = parentSetgid ? dir.st_gid : cred.gid
        var mode = requestedMode & 0o7777
        if isDirectory {
            mode &= ~UInt32(S_ISUID | S_ISGID)
            if parentSetgid { mode |= UInt32(S_ISGID) }
        } else if mode & (UInt32(S_ISGID) | 0o010) == UInt32(S_ISGID) | 0o010, parentSetgid, !cred.isRoot,
            !cred.isInGroup(gid)
        {
            mode &= ~UInt32(S_ISGID)
        }
        return (cred.uid, gid, mode)
    }

    func createObject(
        in dirH: ObjectHandle, _ name: [UInt8], _ kind: NewObject, attributes: SetAttributes,
        verifier: UInt64? = nil, as cred: Credentials,
        existing: (Node) throws(UnionError) -> Node?
    ) throws(UnionError) -> ChangeResult {
        try Names.validate(name)
        let upper = try self.requireUpper()
        // A regular file's inode is made before the lock (`PreparedFiles.swift`); what the change does not take is
        // released after it.
        var prepared: PreparedFile?
        if case .regular = kind {
            prepared = self.prepareNewFile(in: dirH, name, requestedMode: attributes.mode ?? 0o644, as: cred)
        }
        defer { if let prepared { self.release(prepared) } }
        return try self.mutate { () throws(UnionError) -> ChangeResult in
            let directory = try self.resolveDirectory(dirH)
            let dirBefore = self.attributes(directory)
            // As knfsd: search permission finds an existing entry; only a new one needs write permission.
            try Permission.require(directory.top.st, cred, Permission.exec)
            if let node = try self.child(of: directory, name) {
                if let kept = try existing(node) {
                    let dirAfter = try self.attributesNow(
                        directory, upper: self.isUpper(directory.top) ? directory.top : nil)
                    return ChangeResult(
                        handle: self.handle(kept), attributes: self.attributes(kept),
                        directory: BeforeAfter(before: dirBefore, after: dirAfter))
                }
                throw .exists
            }
            try Permission.require(directory.top.st, cred, Permission.write)
            if case .node(let nodeType, _) = kind, nodeType == .characterDevice || nodeType == .blockDevice,
                !cred.isRoot
            {
                throw .notPermitted
            }
            let parent = try self.upperDirectory(of: directory)
            guard let parentFD = parent.dir else { throw .notDirectory }
            let isDir: Bool
            let defaultMode: UInt32
            switch kind {
            case .directory: (isDir, defaultMode) = (true, 0o755)
            case .symlink: (isDir, defaultMode) = (false, 0o777)
            default: (isDir, defaultMode) = (false, 0o644)
            }
            let own = self.newOwnership(parent.st, cred, attributes.mode ?? defaultMode, isDirectory: isDir)
            // A regular file takes the inode prepared for it when it was made for this owner and mode, else a spare
            // inode when REMOVE left one (`SpareInodes.swift`): no inode to allocate.
            var spare: (name: [UInt8], fd: FD)?
            var unnamed: (file: FD, linking: UnnamedFiles.Linking, built: stat?)?
            if case .regular = kind {
                if let taken = prepared, taken.isMade(for: own) {
                    prepared = nil
                    self.stats.preparedFilesTaken.add(1, ordering: .relaxed)
                    switch taken.source {
                    case .spare(let number): spare = (SpareInodes.name(number), taken.file)
                    case .unnamed(let linking, let st): unnamed = (taken.file, linking, st)
                    }
                } else {
                    spare = self.takeSpare(uid: own.uid, gid: own.gid, mode: own.mode).map {
                        (SpareInodes.name($0.number), $0.fd)
                    }
                }
            }
            let path = Names.join(parent.path, name).displayString
            // Else an unnamed inode made in the directory itself (`O_TMPFILE`), so that ext4 takes it from that
            // directory's block group, as it would for a plain create (one made under work/ came from work/'s group).
            if case .regular = kind, spare == nil, unnamed == nil,
                let made = try self.unnamedFile(in: parentFD, upper, mode: own.mode, path: path)
            {
                unnamed = (made.file, made.linking, nil)
            }
            if let unnamed {
                let (whitedOut, fileid) = try self.publishUnnamed(
                    unnamed.file, linking: unnamed.linking, built: unnamed.built, own: own, attributes: attributes,
                    verifier: verifier, in: directory, parent, name, path: path)
                return try self.created(
                    name, in: directory, dirH, parent, whitedOut: whitedOut, before: dirBefore,
                    made: (fileid, unnamed.file))
            }
            let tmp = spare?.name ?? self.workName("new")
            let tmpPath = "work/" + tmp.displayString
            let (whitedOut, made) = try self.cleaningWork(tmp) {
                () throws(UnionError) -> (Bool, (fileid: UInt64, file: FD)?) in
                // Step 1: build it under work/ (no fsync: the batch's sync covers it with the rename). A regular file
                // is made through its descriptor (owner, mode, size, stat), kept for the batch's fsync where there is one.
                var file = spare?.fd
                try tmp.withCName { (cName) throws(UnionError) in
                    switch kind {
                    case .regular where spare != nil:
                        return  // owner, mode and times already set
                    case .regular:
                        let fd = FD(
                            try Sys.retry("openat", tmpPath) {
                                openat(upper.work.raw, cName, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
                            })
                        file = fd
                        _ = try Sys.retry("fchown", tmpPath) { fchown(fd.raw, own.uid, own.gid) }
                        _ = try Sys.retry("fchmod", tmpPath) { fchmod(fd.raw, mode_t(own.mode)) }
                        return
                    case .directory:
                        _ = try Sys.retry("mkdirat", tmpPath) { mkdirat(upper.work.raw, cName, 0o700) }
                    case .symlink(let target):
                        _ = try target.withCName { (cTarget) throws(UnionError) -> CInt in
                            try Sys.retry("symlinkat", tmpPath) { symlinkat(cTarget, upper.work.raw, cName) }
                        }
                    case .node(let nodeType, let rdev):
                        let fmt: mode_t
                        switch nodeType {
                        case .characterDevice: fmt = S_IFCHR
                        case .blockDevice: fmt = S_IFBLK
                        case .socket: fmt = S_IFSOCK
                        case .fifo: fmt = S_IFIFO
                        default: throw .notSupported("mknod of type \(nodeType)")
                        }
                        _ = try Sys.retry("mknodat", tmpPath) {
                            mknodat(upper.work.raw, cName, fmt | 0o600, Sys.makedev(rdev.major, rdev.minor))
                        }
                    }
                    _ = try Sys.retry("fchownat", tmpPath) {
                        fchownat(upper.work.raw, cName, own.uid, own.gid, AT_SYMLINK_NOFOLLOW)
                    }
                    if case .symlink = kind {
                    } else {
                        _ = try Sys.retry("fchmodat", tmpPath) { fchmodat(upper.work.raw, cName, mode_t(own.mode), 0) }
                    }
                }
                if let fd = file, let size = attributes.size, size > 0 {
                    _ = try Sys.retry("ftruncate", tmpPath) { ftruncate(fd.raw, off_t(clamping: size)) }
                }
                try self.applyTimes(upper.work, tmp, attributes, path: tmpPath)
                let tmpSt: stat
                if let fd = file {
                    tmpSt = try Files.fstat(fd, path: tmpPath)
                } else {
                    guard let st = try Files.statAt(upper.work, tmp, path: tmpPath) else { throw .noEntry }
                    tmpSt = st
                }
                if self.syncsEachObject {
                    if let fd = file {
                        self.changed(.file(fd, path: tmpPath))
                    } else if isDir {
                        let fd = try Files.openAt(upper.work, tmp, O_RDONLY, path: tmpPath)
                        self.changed(.file(fd, path: tmpPath))
                    } else {
                        self.changed(.filesystem(path: path))  // a symlink or device node: no descriptor to fsync
                    }
                }
                try self.crashPoint("create.afterBuild")
                // Step 2: identity, and for a directory its opaque marker (new inode: stale records cleared).
                let ino = UInt64(tmpSt.st_ino)
                let whitedOut = try self.isWhiteout(in: parent, name)
                if isDir {
                    var change = RecordChange()
                    change.clearDirectories = self.upperRecords.withLock { records in
                        records.whiteouts[ino] != nil || records.opaque.contains(ino) || records.redirects[ino] != nil
                            ? [ino] : []
                    }
                    let below = try self.existsBelow(directory, name)
                    if whitedOut || below { change.addOpaque = [ino] }
                    // What describes the new directory must be on disk before the directory can be.
                    if !change.isEmpty {
                        self.nodeCache.withLock { $0.removeAll() }  // merge records changed
                        try self.durable(try self.commit(change, "prepare new directory"))
                    }
                }
                let fileid = try self.identities.fileid(
                    .init(key: .init(layer: 0, ino: ino, isUpper: true), parent: directory.fileid, name: name))
                if let verifier { self.identities.setVerifier(fileid, verifier) }
                try self.crashPoint("create.afterRecord")
                // Step 3: publish.
                try Files.renameNoReplace(upper.work, tmp, parentFD, name, path: path)
                self.changed(.directory(parentFD, path: parent.pathString))
                if spare != nil { self.changed(.directory(upper.work, path: "work")) }  // its entry there went away
                return (whitedOut, file.map { (fileid, $0) })
            }
            return try self.created(
                name, in: directory, dirH, parent, whitedOut: whitedOut, before: dirBefore, made: made)
        }
    }

    /// After the publishing step of a create: drops a whiteout the new entry beats, and the change's result.
    private func created(
        _ name: [UInt8], in directory: Node, _ dirH: ObjectHandle, _ parent: Location, whitedOut: Bool,
        before dirBefore: Attributes, made: (fileid: UInt64, file: FD)? = nil
    ) throws(UnionError) -> ChangeResult {
        try self.crashPoint("create.afterPublish")
        // Step 4: the real entry beats the whiteout; drop it once that entry is durable.
        if whitedOut {
            var drop = RecordChange()
            drop.dropWhiteouts = [(parent.ino, name)]
            try self.commit(drop, "drop whiteout under new entry", afterSync: true)
        }
        self.invalidateListing(directory.fileid)
        let fresh = self.isUpper(directory.top) ? directory : try self.resolveDirectory(dirH)
        let created: Node
        if let made, let parentFD = parent.dir {
            // A regular file just linked into an upper directory: what a lookup of its name would find, from its
            // descriptor (a lookup stats the name in every layer again).
            let path = Names.join(parent.path, name)
            let st = try Files.fstat(made.file, path: path.displayString)
            let top = Location(layer: parent.layer, path: path, parent: parentFD, name: name, dir: nil, st: st)
            created = Node(
                fileid: made.fileid, parentFileid: fresh.fileid, name: name, top: top, dirs: [top],
                lowerPath: fresh.lowerPath + [name], indexed: nil)
        } else {
            guard let found = try self.child(of: fresh, name) else { throw .noEntry }
            created = found
        }
        let dirAfter = try self.attributesNow(fresh, upper: parent)
        return ChangeResult(
            handle: self.handle(created), attributes: self.attributes(created),
            directory: BeforeAfter(before: dirBefore, after: dirAfter))
    }

    /// A new regular file without a name yet, made in upper directory `dir` (`O_TMPFILE`), open for writing; nil
    /// where the upper's file system cannot make one or link it afterwards (`UnnamedFiles`).
    /// It is made with the permission bits of `mode` (less the umask), so that usually no chmod is needed.
    func unnamedFile(
        in dir: FD, _ upper: UpperLayer, mode: UInt32, path: String
    ) throws(UnionError) -> (file: FD, linking: UnnamedFiles.Linking)? {
        guard let linking = UnnamedFiles.linking(upper) else { return nil }
        // No one else can open a file without a name, so its final mode is safe to give it at once.
        let file = FD(
            try Sys.retry("openat(O_TMPFILE)", path) {
                openat(dir.raw, ".", UnnamedFiles.openFlags | O_WRONLY | O_CLOEXEC, mode_t(mode & 0o777))
            })
        return (file, linking)
    }

    /// The owner and mode of a new unnamed file, set only when it was not made with them (a caller other than the
    /// server's user, special bits, a umask that cut a bit): its stat, and whether it changed since (then stat again).
    func giveOwnerAndMode(
        _ file: FD, _ own: (uid: UInt32, gid: UInt32, mode: UInt32), path: String
    ) throws(UnionError) -> (stat, Bool) {
        let st = try Files.fstat(file, path: path)
        return (st, try Files.setOwnerAndMode(file, from: st, uid: own.uid, gid: own.gid, mode: own.mode, path: path))
    }

    /// Steps 1 to 3 of a CREATE of a regular file made unnamed (`unnamedFile`): owner, mode, size and times through
    /// its descriptor, its identity, then its name (`linkat`, which fails if the name exists, as the rename would).
    /// A crash before the link leaves no name anywhere: the kernel frees the inode with its last descriptor (after a
    /// power cut, the file system check clears it as an unattached inode without data blocks). Returns whether a whiteout was on
    /// the name, and the file's fileid.
    private func publishUnnamed(
        _ file: FD, linking: UnnamedFiles.Linking, built: stat?, own: (uid: UInt32, gid: UInt32, mode: UInt32),
        attributes: SetAttributes, verifier: UInt64?,
        in directory: Node, _ parent: Location, _ name: [UInt8], path: String
    ) throws(UnionError) -> (whitedOut: Bool, fileid: UInt64) {
        var recorded: UInt64?
        do throws(UnionError) {
            // Step 1: build it (no fsync: the batch's sync covers it with the link). Owner and mode are set only when
            // the file was not made with them (a caller other than the server's user, special bits, a umask that cut a
            // bit), and not again for a file prepared before the lock with them (`built`: its stat then).
            var st: stat
            var restat = false
            if let built { st = built } else { (st, restat) = try self.giveOwnerAndMode(file, own, path: path) }
            if let size = attributes.size, size > 0 {
                _ = try Sys.retry("ftruncate", path) { ftruncate(file.raw, off_t(clamping: size)) }
                restat = true
            }
            if var times = Self.timespecs(attributes) {
                _ = try Sys.retry("futimens", path) { futimens(file.raw, &times) }
                restat = true
            }
            if restat { st = try Files.fstat(file, path: path) }
            if self.syncsEachObject { self.changed(.file(file, path: path)) }
            try self.crashPoint("create.afterBuild")
            // Step 2: identity.
            let ino = UInt64(st.st_ino)
            let whitedOut = try self.isWhiteout(in: parent, name)
            let fileid = try self.identities.fileid(
                .init(key: .init(layer: 0, ino: ino, isUpper: true), parent: directory.fileid, name: name))
            recorded = ino
            if let verifier { self.identities.setVerifier(fileid, verifier) }
            try self.crashPoint("create.afterRecord")
            // Step 3: publish.
            guard let parentFD = parent.dir else { throw .notDirectory }
            try UnnamedFiles.link(file, parentFD, name, path: path, linking)
            self.changed(.directory(parentFD, path: parent.pathString))
            return (whitedOut, fileid)
        } catch {
            // The inode goes with its descriptor: an identity already pointing at it must not outlive it (the
            // inode number would be given to another file).
            if case .simulatedCrash = error { throw error }
            if let recorded { self.identities.clearUpper(inodes: [recorded]) }
            throw error
        }
    }

    /// CREATE. UNCHECKED returns an existing regular file (truncated if `attributes.size == 0`); GUARDED fails with
    /// `.exists`; EXCLUSIVE succeeds again only for the same verifier (kept in the sidecar, RFC 1813 §3.3.8).
    public func create(
        in dir: ObjectHandle, _ name: [UInt8], mode: CreateMode, attributes: SetAttributes,
        as cred: Credentials
    ) throws(UnionError) -> (ObjectHandle, Attributes) {
        let change = try self.createChange(in: dir, name, mode: mode, attributes: attributes, as: cred)
        return (change.handle!, change.attributes!)
    }

    /// CREATE with the directory's attributes before and after, taken with the change.
    public func createChange(
        in dir: ObjectHandle, _ name: [UInt8], mode: CreateMode, attributes: SetAttributes,
        as cred: Credentials
    ) throws(UnionError) -> ChangeResult {
        var attrs = attributes
        var verifier: UInt64?
        if case .exclusive(let requestVerifier) = mode {
            attrs = SetAttributes()
            verifier = requestVerifier
        }
        return try self.createObject(in: dir, name, .regular, attributes: attrs, verifier: verifier, as: cred) {
            (node) throws(UnionError) -> Node? in
            switch mode {
            case .guarded: return nil
            case .exclusive(let requestVerifier):
                return try self.identities.verifier(node.fileid) == requestVerifier ? node : nil
            case .unchecked:
                guard node.type == .regular else { return nil }
                if attributes.size == 0 && node.dataStat.st_size != 0 {
                    return try self.setattrLocked(node, SetAttributes(size: 0), guardCtime: nil, as: cred)
                }
                return node
            }
        }
    }

    /// MKDIR.
    public func mkdir(
        in dir: ObjectHandle, _ name: [UInt8], attributes: SetAttributes, as cred: Credentials
    )
        throws(UnionError) -> (ObjectHandle, Attributes)
    {
        let change = try self.mkdirChange(in: dir, name, attributes: attributes, as: cred)
        return (change.handle!, change.attributes!)
    }

    /// MKDIR with the directory's attributes before and after.
    public func mkdirChange(
        in dir: ObjectHandle, _ name: [UInt8], attributes: SetAttributes, as cred: Credentials
    )
        throws(UnionError) -> ChangeResult
    {
        try self.createObject(in: dir, name, .directory, attributes: attributes, as: cred) { _ in nil }
    }

    /// SYMLINK: the target is stored as given and never followed by the union.
    public func symlink(
        in dir: ObjectHandle, _ name: [UInt8], target: [UInt8], attributes: SetAttributes, as cred: Credentials
    ) throws(UnionError) -> (ObjectHandle, Attributes) {
        let change = try self.symlinkChange(in: dir, name, target: target, attributes: attributes, as: cred)
        return (change.handle!, change.attributes!)
    }

    /// SYMLINK with the directory's attributes before and after.
    public func symlinkChange(
        in dir: ObjectHandle, _ name: [UInt8], target: [UInt8], attributes: SetAttributes, as cred: Credentials
    ) throws(UnionError) -> ChangeResult {
        guard !target.isEmpty, !target.contains(0), target.count <= Int(PATH_MAX) else {
            throw .invalid("symlink target")
        }
        return try self.createObject(in: dir, name, .symlink(target), attributes: attributes, as: cred) { _ in nil }
    }

    /// MKNOD: devices need uid 0 (CAP_MKNOD); FIFOs and sockets do not.
    public func mknod(
        in dir: ObjectHandle, _ name: [UInt8], type: FileType, rdev: DeviceNumber, attributes: SetAttributes,
        as cred: Credentials
    ) throws(UnionError) -> (ObjectHandle, Attributes) {
        let change = try self.mknodChange(in: dir, name, type: type, rdev: rdev, attributes: attributes, as: cred)
        return (change.handle!, change.attributes!)
    }

    /// MKNOD with the directory's attributes before and after.
    public func mknodChange(
        in dir: ObjectHandle, _ name: [UInt8], type: FileType, rdev: DeviceNumber, attributes: SetAttributes,
        as cred: Credentials
    ) throws(UnionError) -> ChangeResult {
        switch type {
        case .characterDevice, .blockDevice:
            // Linux device numbers: 12-bit major, 20-bit minor (knfsd answers INVAL for others, as here).
            guard rdev.major <= 0xfff, rdev.minor <= 0xf_ffff else {
                throw .invalid("device number \(rdev.major):\(rdev.minor) (major above 4095 or minor above 1048575)")
            }
        case .socket, .fifo: break
        default: throw .notSupported("mknod of type \(type)")
        }
        return try self.createObject(in: dir, name, .node(type, rdev), attributes: attributes, as: cred) { _ in nil }
    }
}

/// Regular files made unnamed in their directory (`O_TMPFILE`) and named by `linkat`: whether an upper's file system
/// can, and how its descriptor is linked. `linkat(fd, "", AT_EMPTY_PATH)` needs CAP_DAC_READ_SEARCH before Linux
/// 6.10; else `/proc/self/fd/N` with AT_SYMLINK_FOLLOW names the same inode. Found out once per file system, with a
/// file made and linked under work/ and removed (a crash meanwhile: a work/ leftover, removed at open).
enum UnnamedFiles {
    enum Linking: Sendable {
        case emptyPath
        case procfs
    }

    /// O_TMPFILE (`__O_TMPFILE | O_DIRECTORY`; the Glibc module does not export the macro).
    static let openFlags: CInt = 0o2000_0000 | O_DIRECTORY

    private static let known = Locked<[UInt64: Linking?]>([:])

    /// How unnamed files are linked on `upper`'s file system; nil when they cannot be made or linked there.
    static func linking(_ upper: UpperLayer) -> Linking? {
        let device = upper.workDevice
        if let found = Self.known.withLock({ $0[device] }) { return found }
        let found = Self.probe(upper.work)
        Self.known.withLock { $0[device] = .some(found) }
        return found
    }

    private static func probe(_ work: FD) -> Linking? {
        let fd = openat(work.raw, ".", Self.openFlags | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        let file = FD(fd)
        let name = Array("probe-\(UInt64.random(in: 0...UInt64.max))".utf8)
        for way in [Linking.emptyPath, .procfs] {
            do throws(UnionError) {
                try Self.link(file, work, name, path: "work", way)
                _ = try? name.withCName { unlinkat(work.raw, $0, 0) }
                return way
            } catch {
                continue
            }
        }
        return nil
    }

    /// Gives the unnamed `file` the name `name` in `dir` (on the file system `linking` was found for); `.exists`
    /// when the name is taken.
    static func link(_ file: FD, _ dir: FD, _ name: [UInt8], path: String, _ way: Linking) throws(UnionError) {
        _ = try name.withCName { (cName) throws(UnionError) -> CInt in
            switch way {
            case .emptyPath:
                return try Sys.retry("linkat", path) { linkat(file.raw, "", dir.raw, cName, Sys.AT_EMPTY_PATH) }
            case .procfs:
                return try Sys.retry("linkat", path) {
                    linkat(AT_FDCWD, "/proc/self/fd/\(file.raw)", dir.raw, cName, AT_SYMLINK_FOLLOW)
                }
            }
        }
    }
}
