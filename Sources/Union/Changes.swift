import Basics
import Glibc
import Synchronization

// The namespace write transaction (`mutate`) and what a namespace change reports: the attributes it needs for its reply, taken under the same lock section as the
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
    /// The attributes of directory `dir` as it is now: its upper copy's fresh stat when it has one (a change made in it
    /// changed it), else as resolved.
    func attributesNow(_ dir: Node, upper: Location?) throws(UnionError) -> Attributes {
        var node = dir
        if let upperLocation = upper {
            let st: stat
            if let fd = upperLocation.dir {
                st = try Files.fstat(fd, path: upperLocation.pathString)
            } else if let parent = upperLocation.parent,
                let fresh = try Files.statAt(parent, upperLocation.name, path: upperLocation.pathString)
            {
                st = fresh
            } else {
                return self.attributes(dir)
            }
            node.top = upperLocation
            node.top.st = st
        }
        return self.attributes(node)
    }

    /// True when every changed object must be fsynced by itself (see `FilesystemSync.eachObject`).
    var syncsEachObject: Bool {
        if case .eachObject = self.identities.sidecar.filesystemSync.withLock({ $0 }) { return true }
        return false
    }
}

extension UnionNamespace {
    /// Runs a namespace change under the write lock with the node cache out of the way, then, without the lock,
    /// waits until what it queued for the group commit is durable (the reply may only leave after that). Inside
    /// `DeferredDurability.deferring` a change that succeeded does not wait: the host holds the reply instead.
    func mutate<T>(_ body: () throws(UnionError) -> T) throws(UnionError) -> T {
        let commits = self.identities.commits
        let asked = Monotonic.nanoseconds()
        commits.beginChange()  // ended by `endChange` below, under the lock, whatever the change's outcome
        let (result, seq) = self.namespaceLock.withWriteLock { () -> (Result<T, UnionError>, UInt64) in
            let granted = Monotonic.nanoseconds()
            let queuedBefore = commits.lastQueued
            let evictionsBefore = self.nodeCache.withLock { $0.evictions }
            defer { self.stats.changed(waited: granted &- asked, held: Monotonic.nanoseconds() &- granted) }
            self.isMutating.store(true, ordering: .relaxed)
            self.identities.insideChange.store(true, ordering: .relaxed)
            defer {
                self.identities.insideChange.store(false, ordering: .relaxed)
                self.isMutating.store(false, ordering: .relaxed)
            }
            let outcome: Result<T, UnionError>
            do throws(UnionError) { outcome = .success(try body()) } catch { outcome = .failure(error) }
            let seq = commits.endChange(queuedAfter: queuedBefore)
            // Every step of a change queues what makes it durable, and a step that moves or replaces an object evicts
            // its cached nodes (`evictNode`): a refusal that did neither made no step. Refused before its first step
            // (MKDIR of a name that exists, REMOVE of one that does not: `mkdir -p` and `rm -f` send them all the
            // time; 9 of a recorded boot's 11 MKDIRs answer EXIST), a change altered nothing any cache describes.
            if case .failure(let error) = outcome, error.isRefusal, seq == queuedBefore,
                self.nodeCache.withLock({ $0.evictions }) == evictionsBefore
            {
                return (outcome, seq)
            }
            self.attributeGeneration.add(1, ordering: .releasing)  // before any reader can see the change
            self.namesGeneration.add(1, ordering: .releasing)  // a failed change too: it may have undone half a step
            if case .failure = outcome {
                // A change that failed half-way may have left cached nodes describing what it undid.
                self.nodeCache.withLock { $0.removeAll() }
            }
            return (outcome, seq)
        }
        if case .failure(.simulatedCrash) = result {
            commits.abandon()  // a simulated crash: what was queued never reaches the disk
            return try result.get()
        }
        if case .success = result, let deferred = DeferredDurability.current {
            // The host holds the reply until the flush covers `seq` and runs other calls meanwhile.
            deferred.add(commits, seq)
            return try result.get()
        }
        do throws(UnionError) {
            try BlockingWaits.run { () throws(UnionError) in try commits.waitDurable(seq) }
        } catch {
            if case .success = result { throw error }
        }
        return try result.get()
    }
}
