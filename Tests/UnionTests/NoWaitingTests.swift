import Foundation
import Glibc
import Testing

@testable import Union

/// `NoWaiting.attempt`: read-only calls an event loop answers itself. What needs no wait answers as it does outside
/// an attempt; a step that would wait (a lock a change holds, a fileid whose row must be durable first, a flush, the
/// sidecar's database, data not in the page cache) refuses instead, before it changes anything.
@Suite struct NoWaitingTests {
    /// `body` inside an attempt: nil when a step refused, else what it returned or threw.
    static func attempt<T>(_ body: () throws(UnionError) -> T) -> Result<T, UnionError>? {
        NoWaiting.attempt { () -> Result<T, UnionError> in Result { () throws(UnionError) -> T in try body() } }
    }

    static func fixture() throws -> (Fixture, UnionNamespace) {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/dir")
        f.file(f.lower(0) + "/dir/a", "alpha")
        f.symlink(f.lower(0) + "/dir/link", to: "a")
        for i in 0..<40 { f.file(f.lower(0) + "/dir/f\(i)") }
        return (f, try f.open())
    }

    /// A namespace just opened (nothing cached): LOOKUP, GETATTR, ACCESS, READLINK, a listing with objects and a
    /// READ of lower objects (derived fileids, data in the page cache) answer inside an attempt exactly as outside.
    @Test func firstSightsOfLowerObjectsAnswerAsOutside() throws {
        let (f, u) = try Self.fixture()
        defer { u.close() }
        _ = f
        let root = u.rootHandle
        let lookup = try #require(
            Self.attempt { () throws(UnionError) in try u.lookupForReply(root, b("dir"), as: .root) })
        let dir = try lookup.get().found.get()
        #expect(dir == (try u.lookupForReply(root, b("dir"), as: .root).found.get()))

        let page = try #require(
            Self.attempt { () throws(UnionError) in
                try u.listDirectory(dir.handle, after: 0, withObjects: true, withParent: true, as: .root) { _ in true }
            }
        ).get()
        let outside = try u.listDirectory(dir.handle, after: 0, withObjects: true, withParent: true, as: .root) { _ in
            true
        }
        #expect(page.entries.map(\.name) == outside.entries.map(\.name) && page.entries.count == 42)
        #expect(page.entries.map(\.object) == outside.entries.map(\.object))

        let a = try u.lookupForReply(dir.handle, b("a"), as: .root).found.get()
        #expect(try #require(Self.attempt { () throws(UnionError) in try u.getattr(a.handle) }).get() == a.attributes)
        let access = try #require(
            Self.attempt { () throws(UnionError) in try u.accessForReply(a.handle, .all, as: alice) }
        ).get()
        #expect(access.granted == (try u.accessForReply(a.handle, .all, as: alice).granted))
        let link = try u.lookupForReply(dir.handle, b("link"), as: .root).found.get()
        let target = try #require(
            Self.attempt { () throws(UnionError) in try u.readlinkForReply(link.handle, as: .root) })
        #expect(try target.get().target == b("a"))

        // The first READ of the file opens it (a system call on metadata) and finds its data in the page cache.
        var bytes = [UInt8](repeating: 0, count: 16)
        let read = try #require(
            bytes.withUnsafeMutableBytes { buffer in
                Self.attempt { () throws(UnionError) in try u.read(a.handle, offset: 0, into: buffer, as: .root) }
            }
        ).get()
        #expect(read.count == 5 && read.isEOF && Array(bytes[0..<5]) == b("alpha"))

        // Refusals and errors are answers too (the NFS layer hands those to the pool for their log lines).
        let missing = try #require(
            Self.attempt { () throws(UnionError) in try u.lookupForReply(dir.handle, b("nothing"), as: .root) })
        guard case .failure(.noEntry) = try missing.get().found else {
            Issue.record("a missing name: \(missing)")
            return
        }
    }

    /// A change holding (or awaiting) the namespace lock: the attempt is refused at once, not left waiting.
    @Test func aLockAChangeHoldsIsRefusedNotWaitedFor() throws {
        let (f, u) = try Self.fixture()
        defer { u.close() }
        _ = f
        let root = u.rootHandle
        #expect(u.namespaceLock.tryWriteLock())
        let held = Self.attempt { () throws(UnionError) in try u.lookupForReply(root, b("dir"), as: .root) }
        let getattr = Self.attempt { () throws(UnionError) in try u.getattr(root) }
        u.namespaceLock.unlockWrite()
        #expect(held == nil && getattr == nil)
        #expect(Self.attempt { () throws(UnionError) in try u.getattr(root) } != nil, "free again")
    }

    /// An upper object without an identity row (made behind the server's back) needs a fileid whose row is durable
    /// before any reply shows it: refused before anything is allocated. The pool's LOOKUP then allocates it, and a
    /// second attempt answers with that same fileid.
    @Test func aFileidToAllocateIsRefusedBeforeItIsAllocated() throws {
        let (f, u) = try Self.fixture()
        defer { u.close() }
        let root = u.rootHandle
        f.file(f.upper + "/tree/made-behind", "z")
        var st = stat()
        #expect(stat(f.upper + "/tree/made-behind", &st) == 0)
        let refused = Self.attempt { () throws(UnionError) in try u.lookupForReply(root, b("made-behind"), as: .root) }
        #expect(refused == nil)
        #expect(u.identities.tables.withLock { $0.byUpper[UInt64(st.st_ino)] } == nil, "nothing was allocated")
        let pool = try u.lookupForReply(root, b("made-behind"), as: .root).found.get()
        let again = try #require(
            Self.attempt { () throws(UnionError) in try u.lookupForReply(root, b("made-behind"), as: .root) })
        #expect(try again.get().found.get() == pool)
    }

    /// The last line of defence: a flush waited for, or the sidecar's database, inside an attempt refuses (a flush
    /// holds the database through its syncs).
    @Test func flushesAndTheDatabaseAreRefused() throws {
        let (f, u) = try Self.fixture()
        defer { u.close() }
        _ = f
        let seq = u.identities.commits.enqueue([{ _ in }])
        #expect(Self.attempt { () throws(UnionError) in try u.identities.commits.waitDurable(seq) } == nil)
        #expect(Self.attempt { () throws(UnionError) in try u.identities.sidecar.read("a test") { _ in 1 } } == nil)
        try u.identities.commits.waitDurable(seq)
        #expect(!NoWaiting.isActive, "an attempt leaves its thread as it found it")
    }
}
