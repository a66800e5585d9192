import Basics
import Glibc
import Logging
import Synchronization

// Spare inodes: a REMOVE of an empty upper-only file moves it to work/ instead of freeing its inode, and the next
// CREATE of a regular file takes it (new owner, mode and times; a new fileid) instead of allocating one.
//
// Why: ext4 without a journal (this project's benchmark disks, many small VMs) skips, for every new inode, each free
// inode of the group that was freed in the last minute (`recently_deleted`, a buffer-cache lookup each), scanning the
// group from its start: after a few thousand removes every create paid for all of them (half the server's CPU in a
// create-after-remove profile). A reused inode is neither freed nor allocated. Crash order: a spare is a work/
// leftover, removed at open like any other (Docs/CRASH-ORDER.md).
//
// Only there: the check is made only without a journal, and elsewhere (ext4 with a journal, XFS, tmpfs) a spare costs a
// rename into work/ (two directories changed) where an unlink changes one, and buys nothing (`keepsSpareInodes`).

/// The spare files in work/, by name. REMOVE adds to it under the namespace write lock; a CREATE takes one there or
/// just before it (`prepareNewFile`), and gives back one it did not use. A spare taken is the taker's alone.
struct SpareInodes: Sendable {
    /// Enough for the removes of a large unpacked tree to feed its next unpacking: a benchmark's 10,000 CREATEs after
    /// 10,000 REMOVEs took 4,096 spares and allocated the rest, at 3,000 ops/s (every allocation scanning the inodes
    /// the removes had freed) against 8,100 with every inode a spare. The inodes cost nothing (empty files); the list
    /// costs 8 bytes each (128 KiB at the limit).
    static let limit = 16_384
    /// The spares by number (`name`): a number, not the name, to keep the list small.
    private(set) var numbers: [UInt64] = []

    var count: Int { self.numbers.count }
    mutating func append(_ number: UInt64) { self.numbers.append(number) }
    mutating func popLast() -> UInt64? { self.numbers.popLast() }
    mutating func removeAll() { self.numbers = [] }

    /// The name of spare `number` in work/.
    static func name(_ number: UInt64) -> [UInt8] { WorkNames.name("spare", number) }
}

extension UnionNamespace {
    /// Whether REMOVE of `n` (upper-only, nothing below) may keep its inode as a spare instead of unlinking it: an
    /// empty regular file with no other link, so nothing of it outlives the name but the inode itself.
    func mayKeepAsSpare(_ n: Node) -> Bool {
        guard self.keepsSpareInodes else { return false }
        let st = n.top.st
        return st.isRegular && st.st_nlink == 1 && st.st_size == 0 && st.st_blocks == 0
            && self.identities.identity(n.fileid)?.isIndexed != true
            && self.spareInodes.withLock { $0.count < SpareInodes.limit }
    }

    /// Whether REMOVE keeps spares in this namespace: where the upper's file system needs them
    /// (`UpperLayer.keepsSpareInodes`), unless a test decides.
    var keepsSpareInodes: Bool {
        switch self.hooks?.spareInodes.load(ordering: .relaxed) {
        case 1: true
        case 0: false
        default: self.upper?.keepsSpareInodes ?? false
        }
    }

    /// Moves the entry `name` of upper directory `parentFD` to work/ as a spare (instead of `unlinkat`).
    func keepAsSpare(_ parentFD: FD, _ name: [UInt8], path: String) throws(UnionError) {
        guard let upper = self.upper else { throw .readOnly }
        let number = WorkNames.nextNumber()
        try Files.renameNoReplace(parentFD, name, upper.work, SpareInodes.name(number), path: path)
        self.changed(.directory(upper.work, path: "work"))
        self.spareInodes.withLock { $0.append(number) }
    }

    /// A spare file of work/ made ready for a new regular file: owner, mode and times (now) set through its
    /// descriptor, still under work/ (the caller publishes it with its rename); its number (`SpareInodes.name`) and
    /// that descriptor (open for writing). Nil when none is left (or the one taken is not an empty plain file any
    /// more: it is dropped).
    func takeSpare(uid: UInt32, gid: UInt32, mode: UInt32) -> (number: UInt64, fd: FD)? {
        guard let upper = self.upper else { return nil }
        while let number = self.spareInodes.withLock({ $0.popLast() }) {
            let spare = SpareInodes.name(number)
            guard let fd = try? Files.openAt(upper.work, spare, O_WRONLY, path: "work") else { continue }
            let hasXattrs = (Sys.gnu.flistxattr.map { $0(fd.raw, nil, 0) } ?? 1) != 0
            do throws(UnionError) {
                let st = try Files.fstat(fd, path: "work")
                if st.isRegular, st.st_nlink == 1, st.st_size == 0, !hasXattrs {
                    // Most spares come back to the owner and mode they had.
                    try Files.setOwnerAndMode(fd, from: st, uid: uid, gid: gid, mode: mode, path: "work")
                    var times = [
                        timespec(tv_sec: 0, tv_nsec: Sys.UTIME_NOW), timespec(tv_sec: 0, tv_nsec: Sys.UTIME_NOW),
                    ]
                    _ = try Sys.retry("futimens", "work") { futimens(fd.raw, &times) }
                    return (number, fd)
                }
            } catch {
                // The create makes a new file instead (a server without the privilege to give files away meets
                // this on every spare: not worth more than a debug line).
                self.logger.debug("a spare inode was dropped", metadata: ["error": "\(error)"])
            }
            _ = try? spare.withCName { unlinkat(upper.work.raw, $0, 0) }
        }
        return nil
    }
}

/// Names of entries made under work/ (spares, new objects, copies): unique in this process by a counter after a prefix
/// drawn once. A random number per name cost a getrandom call on every REMOVE (its spare) and MKDIR; names of earlier
/// runs cannot collide for long either way (open removes work/'s leftovers, and one process holds a layer at a time).
enum WorkNames {
    private static let prefix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    private static let counter = Atomic<UInt64>(0)

    static func next(_ what: String) -> [UInt8] {
        Self.name(what, Self.nextNumber())
    }

    /// A number no other work/ name of this process has (`name` makes the name).
    static func nextNumber() -> UInt64 {
        Self.counter.add(1, ordering: .relaxed).newValue
    }

    static func name(_ what: String, _ number: UInt64) -> [UInt8] {
        Array("\(what)-\(Self.prefix)-\(number)".utf8)
    }
}
