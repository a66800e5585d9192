import Glibc

// What a namespace change reports: the attributes it needs for its reply, taken under the same lock section as the
// change itself (before the group commit's flush), so they bracket exactly this change and no other.

/// An object's attributes just before and just after one change (NFS "wcc data"). `before` is nil only when the
/// object did not exist before (never for a directory a change was made in).
public struct BeforeAfter: Sendable, Equatable {
    public var before: Attributes?
    public var after: Attributes?

    public init(before: Attributes?, after: Attributes?) {
        self.before = before
        self.after = after
    }
}

/// The result of a namespace change (CREATE, MKDIR, SYMLINK, MKNOD, LINK, REMOVE, RMDIR, RENAME, SETATTR).
public struct ChangeResult: Sendable {
    /// The object made, linked or changed (nil for REMOVE, RMDIR and RENAME).
    public var handle: ObjectHandle?
    /// That object's attributes after the change.
    public var attributes: Attributes?
    /// The object's own attributes around the change (SETATTR).
    public var object: BeforeAfter?
    /// The directory the change was made in (RENAME: the source directory). Nil for SETATTR.
    public var directory: BeforeAfter?
    /// RENAME: the target directory (the same values as `directory` when both are one directory).
    public var toDirectory: BeforeAfter?

    public init(
        handle: ObjectHandle? = nil, attributes: Attributes? = nil, object: BeforeAfter? = nil,
        directory: BeforeAfter? = nil, toDirectory: BeforeAfter? = nil
    ) {
        self.handle = handle
        self.attributes = attributes
        self.object = object
        self.directory = directory
        self.toDirectory = toDirectory
    }
}

extension UnionNamespace {
    /// The attributes of directory `d` as it is now: its upper copy's fresh stat when it has one (a change made in it
    /// changed it), else as resolved.
    func attributesNow(_ d: Node, upper: Location?) throws(UnionError) -> Attributes {
        var n = d
        if let u = upper {
            let st: stat
            if let fd = u.dir {
                st = try Files.fstat(fd, path: u.pathString)
            } else if let p = u.parent, let s = try Files.statAt(p, u.name, path: u.pathString) {
                st = s
            } else {
                return self.attributes(d)
            }
            n.top = u
            n.top.st = st
        }
        return self.attributes(n)
    }

    /// True when every changed object must be fsynced by itself (see `FilesystemSync.eachObject`).
    var syncsEachObject: Bool {
        if case .eachObject = self.identities.sidecar.filesystemSync.withLock({ $0 }) { return true }
        return false
    }
}
