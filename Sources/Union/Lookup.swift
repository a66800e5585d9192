import Glibc

// Lookup (Docs/SEMANTICS.md): walk the layers top-down; the first layer with a real entry wins; a whiteout in a layer hides
// the name in every layer below; an opaque directory stops the merge; a directory with a redirect takes its lower
// content from the redirect path, looked up from the root of the layers below it. Within one layer a real entry
// beats its own whiteout. Like overlayfs `ovl_lookup`, the state of one step is a list of layer directories.

struct ChildLookup {
    var top: Location
    var dirs: [Location]
    /// The redirect recorded on the upper directory, if the child is one.
    var upperRedirect: [UInt8]?
}

extension UnionNamespace {
    func isWhiteout(in dir: Location, _ name: [UInt8]) throws(UnionError) -> Bool {
        let layer = self.layers[dir.layer]
        switch layer.kind {
        case .upper:
            return self.upperRecords.withLock { $0.isWhiteout(dirIno: dir.ino, name) }
        case .strataLower:
            return layer.lowerRecords.isWhiteout(dirIno: dir.ino, name)
        case .plainLower:
            guard let fd = dir.dir, name.count + 4 <= Names.maxLength else { return false }
            return try Files.statAt(fd, Names.ociWhiteoutPrefix + name, path: dir.pathString) != nil
        }
    }

    func isOpaque(_ loc: Location) throws(UnionError) -> Bool {
        let layer = self.layers[loc.layer]
        switch layer.kind {
        case .upper:
            return self.upperRecords.withLock { $0.opaque.contains(loc.ino) }
        case .strataLower:
            return layer.lowerRecords.opaque.contains(loc.ino)
        case .plainLower:
            if let known = layer.foreignOpaque.withLock({ $0[loc.ino] }) { return known }
            guard let fd = loc.dir else { return false }
            var opaque = try Files.statAt(fd, Names.ociOpaqueMarker, path: loc.pathString) != nil
            if !opaque {
                let rfd = try Files.reopenDirectory(fd, path: loc.pathString)
                for key in ["trusted.overlay.opaque", "user.overlay.opaque"] where Files.getXattr(rfd, key) == [0x79] {
                    opaque = true
                }
            }
            layer.foreignOpaque.withLock { $0[loc.ino] = opaque }
            return opaque
        }
    }

    func redirect(_ loc: Location) -> [UInt8]? {
        let layer = self.layers[loc.layer]
        switch layer.kind {
        case .upper: return self.upperRecords.withLock { $0.redirects[loc.ino] }
        case .strataLower: return layer.lowerRecords.redirects[loc.ino]
        case .plainLower: return nil
        }
    }

    /// The root directories of layers `from...`, top-down, stopping after an opaque root.
    func rootDirs(from: Int) throws(UnionError) -> [Location] {
        var out: [Location] = []
        for layer in self.layers[from...] {
            let st = try Files.fstat(layer.tree, path: layer.directory)
            let loc = Location(layer: layer.index, path: [], parent: nil, name: [], dir: layer.tree, st: st)
            out.append(loc)
            if try self.isOpaque(loc) { break }
        }
        return out
    }

    /// The merged directory at `components` in the union of layers `from...` (a redirect target).
    func resolveDirs(_ components: [[UInt8]], from: Int) throws(UnionError) -> [Location] {
        guard from < self.layers.count else { return [] }
        var dirs = try self.rootDirs(from: from)
        for component in components {
            guard let found = try self.lookupIn(dirs, component), found.top.st.isDirectory else { return [] }
            dirs = found.dirs
        }
        return dirs
    }

    /// Looks `name` up in the merged directory made of `dirs`.
    func lookupIn(_ dirs: [Location], _ name: [UInt8]) throws(UnionError) -> ChildLookup? {
        var top: Location?
        var childDirs: [Location] = []
        var upperRedirect: [UInt8]?
        for dir in dirs {
            guard let dfd = dir.dir else { continue }
            let layer = self.layers[dir.layer]
            let childPath = Names.join(dir.path, name)
            if layer.kind == .plainLower && Names.isOCIMarker(name) { continue }  // markers are never shown
            guard let st = try Files.statAt(dfd, name, path: childPath.displayString) else {
                if try self.isWhiteout(in: dir, name) { break }
                continue
            }
            if layer.kind == .plainLower && st.isOverlayWhiteout { break }
            if top != nil && !st.isDirectory { break }  // a non-directory below a directory is hidden
            var loc = Location(layer: dir.layer, path: childPath, parent: dfd, name: name, dir: nil, st: st)
            if st.isDirectory {
                loc.dir = try Files.openDirPath(dfd, name, path: childPath.displayString)
            }
            if top == nil {
                top = loc
                if !st.isDirectory { break }
            }
            childDirs.append(loc)
            if try self.isOpaque(loc) { break }
            if let target = self.redirect(loc) {
                if layer.isUpper { upperRedirect = target }
                childDirs += try self.resolveDirs(Names.split(target), from: dir.layer + 1)
                break
            }
        }
        guard let top else { return nil }
        return ChildLookup(top: top, dirs: childDirs, upperRedirect: upperRedirect)
    }

    func identityKey(_ loc: Location) -> IdentityStore.Key {
        IdentityStore.Key(layer: loc.layer, ino: loc.ino, isUpper: self.layers[loc.layer].isUpper)
    }

    func rootNode() throws(UnionError) -> Node {
        let dirs = try self.rootDirs(from: 0)
        guard let top = dirs.first else { throw .stale }
        return Node(
            fileid: self.rootFileid, parentFileid: self.rootFileid, name: [], top: top, dirs: dirs,
            lowerPath: [], indexed: nil)
    }

    /// The child `name` of directory `parent`, identified (fileid allocated on first sight), or nil.
    func child(of parent: Node, _ name: [UInt8]) throws(UnionError) -> Node? {
        guard let found = try self.lookupIn(parent.dirs, name) else { return nil }
        let multi = !found.top.st.isDirectory && found.top.st.st_nlink > 1
        let merged = self.mergedLowerWithoutRow(found)
        let fileid = try self.identities.fileid(
            .init(
                key: self.identityKey(merged ?? found.top), parent: parent.fileid, name: name,
                mayHaveOtherNames: multi))
        if merged != nil {
            // Record the upper inode again (queued: until it is durable, this same rule gives the same fileid).
            self.identities.setUpper(fileid, upperIno: found.top.ino, isIndexed: false)
        }
        return try self.makeNode(found, fileid: fileid, parent: parent, name: name)
    }

    /// A copied-up directory keeps the fileid of the lower directory it merges without its identity row having to be
    /// durable before the copy is published (Docs/CRASH-ORDER.md, copy-up): an upper directory with no row of its own
    /// that merges a lower one (not opaque, not renamed: those always have rows) takes that lower directory's identity,
    /// as before its copy-up. The lower directory, or nil when `found` is anything else.
    func mergedLowerWithoutRow(_ found: ChildLookup) -> Location? {
        guard self.layers[found.top.layer].isUpper, found.top.st.isDirectory, found.upperRedirect == nil,
            found.dirs.count > 1, !self.identities.hasUpperRow(found.top.ino)
        else { return nil }
        return found.dirs.first { !self.layers[$0.layer].isUpper && $0.dir != nil }
    }

    func makeNode(_ r: ChildLookup, fileid: UInt64, parent: Node, name: [UInt8]) throws(UnionError) -> Node {
        var node = Node(
            fileid: fileid, parentFileid: parent.fileid, name: name, top: r.top, dirs: r.dirs,
            lowerPath: r.upperRedirect.map { Names.split($0) } ?? (parent.lowerPath + [name]), indexed: nil)
        node.indexed = try self.indexedCopy(of: r.top, fileid: fileid)
        return node
    }

    /// The `index/` copy holding the data of a lower hard link that was copied up, if `top` is one.
    func indexedCopy(of top: Location, fileid: UInt64) throws(UnionError) -> Location? {
        guard !self.layers[top.layer].isUpper, self.upper != nil, !top.st.isDirectory else { return nil }
        return try self.indexedCopy(of: top, identity: self.identities.identity(fileid))
    }

    /// `indexedCopy` with the object's identity at hand (one look into the identity table per listed entry).
    func indexedCopy(of top: Location, identity: Identity?) throws(UnionError) -> Location? {
        guard let ident = identity, ident.isIndexed, !self.layers[top.layer].isUpper, let upper = self.upper,
            !top.st.isDirectory
        else { return nil }
        let fileid = ident.fileid
        let iname = Array(String(fileid).utf8)
        guard let st = try Files.statAt(upper.index, iname, path: "index/\(fileid)") else { return nil }
        return Location(
            layer: 0, path: Array("index/\(fileid)".utf8), parent: upper.index, name: iname, dir: nil, st: st)
    }

    /// Resolves a file handle to the object it names now: `.stale` if it is gone or malformed.
    func resolve(_ h: ObjectHandle) throws(UnionError) -> Node {
        if self.isClosed.load(ordering: .relaxed) { throw .stale }
        // A forged or foreign handle (wrong tag) names nothing here, as an unknown fileid.
        guard h.tag == self.identities.handleKey.tag(h.fileid) else { throw .stale }
        return try self.resolve(fileid: h.fileid, depth: 0)
    }

    /// Walks from the root along the recorded names (parent fileid + name). An object whose recorded name does not
    /// lead to it any more (a hard link whose first name was removed; a crash between a rename(2) and the identity
    /// update) is looked for under its other known names.
    func resolve(fileid target: UInt64, depth: Int) throws(UnionError) -> Node {
        if let cached = try self.cachedNode(target) { return cached }
        if target == self.rootFileid {
            let root = try self.rootNode()
            self.cacheNode(root)
            return root
        }
        guard depth < 64 else { throw .stale }
        var chain: [(name: [UInt8], fileid: UInt64)] = []
        var fileid = target
        while fileid != self.rootFileid {
            guard chain.count < 4096 else { throw .stale }
            guard let ident = self.identities.identity(fileid) else {
                // A derived fileid whose row a crash lost (or a removed object's).
                guard let found = try self.rediscover(fileid, depth: depth) else { throw .stale }
                self.cacheNode(found)
                return try self.walkDown(from: found, chain.reversed(), depth: depth)
            }
            chain.append((ident.name, fileid))
            fileid = ident.parent
            if let cached = try self.cachedNode(fileid) {
                return try self.walkDown(from: cached, chain.reversed(), depth: depth)
            }
        }
        return try self.walkDown(from: try self.rootNode(), chain.reversed(), depth: depth)
    }

    private func walkDown(
        from start: Node, _ steps: [(name: [UInt8], fileid: UInt64)], depth: Int
    ) throws(UnionError)
        -> Node
    {
        var node = start
        self.stats.resolutionSteps.add(UInt64(steps.count), ordering: .relaxed)
        for (name, fileid) in steps {
            var found: Node?
            do throws(UnionError) {
                if node.isDirectory, let child = try self.child(of: node, name), child.fileid == fileid {
                    found = child
                }
            } catch {
                switch error {
                case .noEntry, .notDirectory: break
                default: throw error
                }
            }
            if found == nil { found = try self.resolveByOtherNames(fileid, depth: depth) }
            guard let found else { throw .stale }
            self.cacheNode(found)
            node = found
        }
        return node
    }

    private func resolveByOtherNames(_ fileid: UInt64, depth: Int) throws(UnionError) -> Node? {
        for other in self.identities.otherNames(fileid) {
            guard let parent = try? self.resolve(fileid: other.parent, depth: depth + 1), parent.isDirectory,
                let child = try? self.child(of: parent, other.name), child.fileid == fileid
            else { continue }
            return child
        }
        return nil
    }

    func resolveDirectory(_ h: ObjectHandle) throws(UnionError) -> Node {
        let node = try self.resolve(h)
        guard node.isDirectory else { throw .notDirectory }
        return node
    }

    func handle(_ n: Node) -> ObjectHandle {
        self.handle(fileid: n.fileid)
    }

    /// The handle of `fileid` in this namespace, with its tag.
    func handle(fileid: UInt64) -> ObjectHandle {
        ObjectHandle(fileid: fileid, tag: self.identities.handleKey.tag(fileid))
    }

    /// nlink of a non-directory is the number of its visible names. A hard-linked lower file has names of two kinds:
    /// upper links (its upper copy's links, less the one in `index/`) and lower names that still show the lower inode
    /// or, once it was copied up, its `index/` copy. The lower names are the lower inode's link count (live before
    /// copy-up, `lowerLinkCount` from then on) less `lowerNamesGone`: those copied or linked up (each became an upper
    /// link), whited out, or renamed over (`lowerNameGone`, at the step that hides the name). Names the lower layers
    /// already hide themselves cannot be known without a walk and still count, as in overlayfs. Directories: the top
    /// copy's nlink (approximate, as overlayfs).
    func linkCount(_ n: Node) -> UInt32 {
        self.linkCount(n, identity: n.isDirectory ? nil : self.identities.identity(n.fileid))
    }

    /// `linkCount` with the object's identity at hand.
    func linkCount(_ n: Node, identity: Identity?) -> UInt32 {
        let st = n.dataStat
        let nlink = UInt32(truncatingIfNeeded: st.st_nlink)
        guard !n.isDirectory, let ident = identity else { return nlink }
        if ident.isIndexed, self.layers[0].isUpper, n.indexed != nil || self.isUpper(n.top) {
            let upperNames = nlink > 0 ? nlink - 1 : 0  // less the index/ link
            let (count, gone) = (ident.lowerLinkCount, ident.lowerNamesGone)
            let lowerNames = count > gone ? count - gone : 0
            return max(1, upperNames &+ lowerNames)
        }
        if !self.isUpper(n.top), ident.lowerNamesGone > 0 {
            return nlink > ident.lowerNamesGone ? nlink - ident.lowerNamesGone : 1
        }
        return nlink
    }

    /// Whether `n` is one of the names that count as lower names in `linkCount`: a non-directory shown from a lower
    /// layer whose inode has other names (or whose upper copy lives in `index/`). A step that stops such a name from
    /// showing the object records it with `IdentityStore.lowerNameGone` (or `RecordChange.lowerNamesGone`).
    func isCountedLowerName(_ n: Node) -> Bool {
        !n.isDirectory && !self.isUpper(n.top) && (n.indexed != nil || n.top.st.st_nlink > 1)
    }

    func attributes(_ n: Node) -> Attributes {
        self.attributes(n, identity: n.isDirectory ? nil : self.identities.identity(n.fileid))
    }

    /// `attributes` with the object's identity at hand (nil for a directory: its link count is its own).
    func attributes(_ n: Node, identity: Identity?) -> Attributes {
        let st = n.dataStat
        let nlink = self.linkCount(n, identity: identity)
        return Attributes(
            type: st.fileType, mode: st.permissionBits, nlink: nlink, uid: st.st_uid, gid: st.st_gid,
            size: UInt64(clamping: st.st_size), usedBytes: UInt64(clamping: st.st_blocks) &* 512,
            rdev: DeviceNumber(major: Sys.major(st.st_rdev), minor: Sys.minor(st.st_rdev)),
            fsid: self.identities.namespaceID, fileid: n.fileid,
            atime: Timespec(seconds: Int64(st.st_atim.tv_sec), nanoseconds: UInt32(clamping: st.st_atim.tv_nsec)),
            mtime: Timespec(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(clamping: st.st_mtim.tv_nsec)),
            ctime: Timespec(seconds: Int64(st.st_ctim.tv_sec), nanoseconds: UInt32(clamping: st.st_ctim.tv_nsec)))
    }

    /// Whether `name` exists in the layers below the upper for directory `dir` (then removing it needs a whiteout).
    func existsBelow(_ dir: Node, _ name: [UInt8]) throws(UnionError) -> Bool {
        let lowerDirs = dir.dirs.filter { !self.layers[$0.layer].isUpper }
        return try self.lookupIn(lowerDirs, name) != nil
    }
}

extension UnionNamespace {
    /// The object at the same name again (not by fileid: a hard link's other names are other places).
    func reresolve(_ node: Node) throws(UnionError) -> Node {
        if node.fileid == self.rootFileid { return try self.rootNode() }
        let parent = try self.resolve(self.handle(fileid: node.parentFileid))
        guard let again = try self.child(of: parent, node.name) else { throw .noEntry }
        return again
    }
}
