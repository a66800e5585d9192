import Foundation
import Glibc
import Logging
import NFS3
import NIOCore
import SunRPC
import Synchronization
import Testing
import XDR

@testable import StrataServer
@testable import Union

/// Read-only calls the caches cannot answer, answered by the event loop all the same
/// (`NFS3Service.handleWithoutWaiting`, `InlineMisses`): byte for byte the pool's replies; nil for
/// what must go to the pool.
@Suite struct NFS3InlineMissTests {
    static func withoutWaiting<Args: XDREncodable>(
        _ harness: NFS3Harness, _ procedure: NFS3Procedure, _ args: Args
    ) -> NFS3Outcome? {
        harness.service.handleWithoutWaiting(
            procedure: procedure.rawValue, arguments: xdrEncoded(args), logger: harness.logger,
            resolve: { try? harness.resolve($0).get() })
    }

    /// An FSSTAT answer's result with the free space and free inodes left out (nil when it is not a success).
    static func withoutFreeSpace(_ outcome: NFS3Outcome) -> FSStat3Res? {
        guard case .success(var buffer) = outcome, var result = try? FSStat3Res(xdr: &buffer) else { return nil }
        if case .ok(var ok) = result {
            (ok.fbytes, ok.abytes, ok.ffiles, ok.afiles) = (0, 0, 0, 0)
            result = .ok(ok)
        }
        return result
    }

    /// A second namespace over the same lower, nothing of it cached: its first LOOKUP, GETATTR, ACCESS, READDIRPLUS,
    /// READ, READLINK, FSINFO, FSSTAT and PATHCONF answer without waiting, exactly as the pool then answers them.
    @Test func firstSightsAreThePoolsAnswers() throws {
        let harness = try NFS3Harness(lowerFiles: ["dir/a": "alpha", "dir/b": "beta"], namespaceCount: 2)
        // Namespace 0 reads everything first: the lower's access times move once (relatime), before the comparison.
        let dir0 = try harness.handle("dir", in: harness.root(0))
        _ = harness.outcome(
            .readdirplus, ReadDirPlus3Args(dir: dir0, cookie: 0, cookieverf: .zero, dircount: 4096, maxcount: 65536))
        _ = harness.outcome(.read, Read3Args(file: try harness.handle("a", in: dir0), offset: 0, count: 100))
        let symlinkResult = try harness.symlink("link", to: Array("dir/a".utf8), in: harness.root(1))
        guard case .ok = symlinkResult else {
            Issue.record("SYMLINK failed: \(symlinkResult)")
            return
        }

        let root = harness.root(1)
        func same<Args: XDREncodable>(
            _ procedure: NFS3Procedure, _ args: Args, sourceLocation: SourceLocation = #_sourceLocation
        ) throws {
            let answered = try #require(
                Self.withoutWaiting(harness, procedure, args), "\(procedure.name)", sourceLocation: sourceLocation)
            #expect(answered == harness.outcome(procedure, args), "\(procedure.name)", sourceLocation: sourceLocation)
        }
        let lookup = Lookup3Args(what: DirOpArgs3(dir: root, name: Array("dir".utf8)))
        #expect(harness.inlineOutcome(.lookup, lookup) == nil, "nothing cached: the cached path declines")
        try same(.lookup, lookup)
        try same(.lookup, Lookup3Args(what: DirOpArgs3(dir: root, name: Array("missing".utf8))))
        let dir = try harness.handle("dir", in: root)
        try same(
            .readdirplus, ReadDirPlus3Args(dir: dir, cookie: 0, cookieverf: .zero, dircount: 4096, maxcount: 65536))
        let file = try harness.handle("b", in: dir)
        try same(.getattr, GetAttr3Args(object: file))
        try same(.access, Access3Args(object: file, access: AccessMask.all.rawValue))
        try same(.read, Read3Args(file: file, offset: 0, count: 100))
        try same(.readlink, ReadLink3Args(symlink: try harness.handle("link", in: root)))
        try same(.fsinfo, FSInfo3Args(fsroot: root))
        // FSSTAT reports the space free at that instant, which the tests running beside this one change: the rest of
        // the two answers must agree.
        let fsstat = FSStat3Args(fsroot: root)
        let inlineFSStat = try #require(Self.withoutWaiting(harness, .fsstat, fsstat), "FSSTAT")
        #expect(Self.withoutFreeSpace(inlineFSStat) == Self.withoutFreeSpace(harness.outcome(.fsstat, fsstat)))
        try same(.pathconf, PathConf3Args(object: root))

        // A listing page larger than the server's preferred size: the pool's (it would hold the event loop longer).
        let large = ReadDirPlus3Args(dir: dir, cookie: 0, cookieverf: .zero, dircount: 4096, maxcount: 1 << 20)
        #expect(Self.withoutWaiting(harness, .readdirplus, large) == nil)
        let largeNames = ReadDir3Args(dir: dir, cookie: 0, cookieverf: .zero, count: (64 << 10) + 1)
        #expect(Self.withoutWaiting(harness, .readdir, largeNames) == nil)
        try same(.readdir, ReadDir3Args(dir: dir, cookie: 0, cookieverf: .zero, count: 64 << 10))

        // Changes never; nor bad arguments or a handle that does not resolve (the pool answers those, with their log
        // lines).
        let create = Create3Args(where: DirOpArgs3(dir: root, name: Array("new".utf8)), how: .unchecked(.init()))
        #expect(Self.withoutWaiting(harness, .create, create) == nil)
        #expect(
            harness.service.handleWithoutWaiting(
                procedure: NFS3Procedure.getattr.rawValue, arguments: ByteBuffer(bytes: [0, 0]), logger: harness.logger,
                resolve: { try? harness.resolve($0).get() }) == nil)
        #expect(
            Self.withoutWaiting(harness, .getattr, GetAttr3Args(object: FileHandle3(Array(repeating: 7, count: 32))))
                == nil)
    }

    /// A change holding the namespace lock: the attempt answers nil at once (the pool waits for the lock instead).
    @Test func aHeldNamespaceLockSendsTheCallToThePool() throws {
        let harness = try NFS3Harness(lowerFiles: ["a": "alpha"])
        let lookup = Lookup3Args(what: DirOpArgs3(dir: harness.root(), name: Array("a".utf8)))
        #expect(harness.namespaces[0].namespaceLock.tryWriteLock())
        let held = Self.withoutWaiting(harness, .lookup, lookup)
        harness.namespaces[0].namespaceLock.unlockWrite()
        #expect(held == nil)
        #expect(Self.withoutWaiting(harness, .lookup, lookup) == harness.outcome(.lookup, lookup))
    }

    final class BlocksRead: Sendable {
        let count = Atomic<Int>(0)
    }

    /// An answer during which the thread read from the disk pauses the answers (the pool's threads answer meanwhile);
    /// they resume when the pause ends. A refused attempt counts as refused.
    @Test func aDiskReadPausesTheAnswersForAWhile() {
        let blocks = BlocksRead()
        let misses = InlineMisses(pauseNanoseconds: 50_000_000, blocksRead: { blocks.count.load(ordering: .relaxed) })
        #expect(misses.answer { 1 } == 1)
        #expect(misses.answer { () -> Int? in nil } == nil)
        #expect(
            misses.answer { () -> Int? in
                blocks.count.add(8, ordering: .relaxed)
                return 2
            } == 2, "answered, though it read the disk")
        #expect(misses.answer { 3 } == nil, "paused")
        #expect(misses.pauses.load(ordering: .relaxed) == 1)
        #expect(misses.answered.load(ordering: .relaxed) == 2 && misses.refused.load(ordering: .relaxed) == 1)
        // The pause ends (a bounded wait for it, however busy the machine).
        let deadline = InlineMisses.now() + 30_000_000_000
        var resumed: Int?
        while resumed == nil, InlineMisses.now() < deadline {
            resumed = misses.answer { 4 }
            if resumed == nil { usleep(5_000) }
        }
        #expect(resumed == 4)
    }

    @Test func readOnlyProceduresAreOfferedToTheEventLoop() {
        let program = NFS3Program(
            resolver: NFS3InlineMissTests.NoResolver(), writeVerifier: 1,
            logger: .init(label: "t") { _ in SwiftLogNoOpLogHandler() })
        for procedure in [
            NFS3Procedure.getattr, .lookup, .access, .readlink, .read, .readdir, .readdirplus, .fsstat, .fsinfo,
            .pathconf,
        ] {
            #expect(program.mayAnswerInline(version: 3, procedure: procedure.rawValue), "\(procedure.name)")
        }
        for procedure in [NFS3Procedure.write, .create, .setattr, .remove, .rename, .commit, .mkdir] {
            #expect(!program.mayAnswerInline(version: 3, procedure: procedure.rawValue), "\(procedure.name)")
        }
    }

    struct NoResolver: NFS3HandleResolver {
        func resolve(
            fileHandle: [UInt8], for call: RPCCallContext
        ) -> Result<(ExportCall, ObjectHandle), CallRejection> { .failure(.badHandle) }
    }
}
