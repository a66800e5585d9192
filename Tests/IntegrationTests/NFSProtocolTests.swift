import Foundation
import NFS3
import NIOCore
import SunRPC
import SunRPCClient
import Synchronization
import TestSupport
import Testing
import XDR

/// The real strata binary driven with our own NFSv3 client for what the libnfs tools do not
/// reach: retransmissions, guards, links, device nodes, cookies, restarts.
@Suite(.serialized) struct NFSProtocolTests {
    let directory: TemporaryDirectory
    let server: ServerProcess

    init() throws {
        self.directory = try TemporaryDirectory()
        try makeThreeLayerFixture(self.directory)
        self.server = try ServerProcess(config: threeLayerConfig(), directory: self.directory)
    }

    @Test func exclusiveCreateRetransmissionSucceedsAndADifferentVerifierGetsExist() throws {
        let client = try NFSTestClient(server: self.server)
        let verifier = CreateVerifier3(rawValue: 0x1122_3344_5566_7788)
        let first = try client.create("exclusive", how: .exclusive(verifier)).get("first EXCLUSIVE create")
        // A retransmission with a new xid (the DRC cannot help): the verifier in the sidecar does.
        let again = try client.create("exclusive", how: .exclusive(verifier)).get("retransmitted EXCLUSIVE create")
        #expect(again.obj.handle == first.obj.handle)
        let other = try client.create("exclusive", how: .exclusive(CreateVerifier3(rawValue: 99)))
        #expect(other.status == .exist)
        // GUARDED onto an existing name: EXIST; UNCHECKED: fine.
        #expect(try client.create("exclusive", how: .guarded(.none)).status == .exist)
        #expect(try client.create("exclusive", how: .unchecked(.none)).status == .ok)
    }

    @Test func nfsOverUDPWritesAndReadsBack() throws {
        let client = try NFSTestClient(server: self.server, transport: .udp)
        let file = try #require(try client.create("over-udp").get("CREATE over UDP").obj.handle)
        let data = (0..<30000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        _ = try client.write(file, data).get("WRITE over UDP")
        var back: [UInt8] = []
        while back.count < data.count {
            let chunk = try client.read(file, offset: UInt64(back.count), count: 8192).get("READ over UDP")
            back += chunk.data.readableBytesView
            if chunk.eof { break }
        }
        #expect(back == data)
        #expect(self.directory.exists("upper/tree/over-udp"))
    }

    @Test func uncheckedCreateOverALowerFileOpensIt() throws {
        // RFC 1813 §3.3.8: UNCHECKED creates the file or, if it exists, leaves it (applying a
        // size of 0 if asked): what `cp` over an existing file relies on.
        let client = try NFSTestClient(server: self.server)
        let etc = try client.handle("etc")
        let opened = try client.create("passwd", in: etc, how: .unchecked(SetAttributes3(size: 0))).get(
            "UNCHECKED over a lower file")
        #expect(opened.objAttributes.attributes?.size == 0)
        #expect(self.directory.read("upper/tree/etc/passwd") == "")
        #expect(self.directory.read("lower2/etc/passwd") == "root:x:0:0:root:/root:/bin/sh\n")
        #expect(try client.create("passwd", in: etc, how: .guarded(.none)).status == .exist)
    }

    @Test func setattrGuardRejectsAStaleCtime() throws {
        let client = try NFSTestClient(server: self.server)
        let file = try client.create("guarded").get().obj.handle
        let handle = try #require(file)
        let attributes = try client.getattr(handle).get().objAttributes
        let wrong = NFSTime3(seconds: attributes.ctime.seconds &- 100, nseconds: 0)
        let refused: SetAttr3Res = try client.call(
            .setattr, SetAttr3Args(object: handle, newAttributes: SetAttributes3(mode: 0o600), guardCtime: wrong))
        #expect(refused.status == .notSync)
        let accepted: SetAttr3Res = try client.call(
            .setattr,
            SetAttr3Args(object: handle, newAttributes: SetAttributes3(mode: 0o600), guardCtime: attributes.ctime))
        let body = try accepted.get("SETATTR with the right guard")
        #expect(body.objWcc.after.attributes?.mode == 0o600)
        #expect(body.objWcc.before.attributes != nil, "wcc_data must carry pre-op attributes")
    }

    @Test func linkOfALowerFileShowsTheSameObjectUnderBothNames() throws {
        let client = try NFSTestClient(server: self.server)
        let passwd = try client.handle("etc/passwd")
        let etc = try client.handle("etc")
        let linked: Link3Res = try client.call(
            .link, Link3Args(file: passwd, link: DirOpArgs3(dir: etc, name: Array("passwd-link".utf8))))
        let body = try linked.get("LINK")
        #expect(body.fileAttributes.attributes?.nlink == 2)
        let viaLink = try client.handle("etc/passwd-link")
        let a = try client.getattr(viaLink).get().objAttributes
        let b = try client.getattr(try client.handle("etc/passwd")).get().objAttributes
        #expect(a.fileid == b.fileid)
        _ = try client.write(viaLink, Array("changed through the link\n".utf8)).get("WRITE")
        #expect(
            try client.readAll(try client.handle("etc/passwd")).starts(with: Array("changed through the link\n".utf8)))
        // The lower layer is untouched.
        #expect(self.directory.read("lower2/etc/passwd") == "root:x:0:0:root:/root:/bin/sh\n")
    }

    @Test func mknodMakesEveryKindOfSpecialFile() throws {
        let client = try NFSTestClient(server: self.server)
        let cases: [(String, MkNodData3, FileType3)] = [
            ("fifo", .fifo(SetAttributes3(mode: 0o600)), .fifo),
            ("socket", .sock(SetAttributes3(mode: 0o600)), .sock),
            (
                "chardev",
                .chr(
                    DeviceData3(devAttributes: SetAttributes3(mode: 0o600), spec: SpecData3(specdata1: 1, specdata2: 3))
                ), .chr
            ),
            (
                "blockdev",
                .blk(
                    DeviceData3(devAttributes: SetAttributes3(mode: 0o600), spec: SpecData3(specdata1: 7, specdata2: 0))
                ), .blk
            ),
        ]
        for (name, data, type) in cases {
            let made: MkNod3Res = try client.call(
                .mknod, MkNod3Args(where: DirOpArgs3(dir: client.root, name: Array(name.utf8)), what: data))
            let body = try made.get("MKNOD \(name)")
            #expect(body.objAttributes.attributes?.type == type, "\(name)")
        }
        let chardev = try client.getattr(try client.handle("chardev")).get().objAttributes
        #expect(chardev.rdev == SpecData3(specdata1: 1, specdata2: 3))
        let bad: MkNod3Res = try client.call(
            .mknod,
            MkNod3Args(
                where: DirOpArgs3(dir: client.root, name: Array("regular".utf8)),
                what: .otherType(FileType3.reg.rawValue)))
        #expect(bad.status == .badtype)
        // Device numbers Linux cannot hold (12-bit major, 20-bit minor) are invalid arguments, not I/O errors.
        let huge: [SpecData3] = [
            SpecData3(specdata1: .max, specdata2: .max), SpecData3(specdata1: 4096, specdata2: 0),
            SpecData3(specdata1: 0, specdata2: 1 << 20),
        ]
        for (i, spec) in huge.enumerated() {
            let made: MkNod3Res = try client.call(
                .mknod,
                MkNod3Args(
                    where: DirOpArgs3(dir: client.root, name: Array("huge\(i)".utf8)),
                    what: .chr(DeviceData3(devAttributes: SetAttributes3(mode: 0o600), spec: spec))))
            #expect(made.status == .inval, "\(spec)")
        }
        let largest: MkNod3Res = try client.call(
            .mknod,
            MkNod3Args(
                where: DirOpArgs3(dir: client.root, name: Array("largest".utf8)),
                what: .blk(
                    DeviceData3(
                        devAttributes: SetAttributes3(mode: 0o600),
                        spec: SpecData3(specdata1: 4095, specdata2: (1 << 20) - 1)))))
        #expect(
            try largest.get("MKNOD largest").objAttributes.attributes?.rdev
                == SpecData3(specdata1: 4095, specdata2: (1 << 20) - 1))
        // LINK of a directory: EPERM as link(2) (RFC 1813 lists no ISDIR for LINK).
        let dirLink: Link3Res = try client.call(
            .link, Link3Args(file: client.root, link: DirOpArgs3(dir: client.root, name: Array("rootlink".utf8))))
        #expect(dirLink.status == .perm)
    }

    @Test func readdirResumesFromSavedCookiesAcrossChangesAndRestart() throws {
        for index in 0..<200 {
            try self.directory.write("lower\(index % 2 + 1)/big/entry-\(String(format: "%03d", index))", "\(index)\n")
        }
        var client = try NFSTestClient(server: self.server)
        var dir = try client.handle("big")
        // First page, small count so it takes several pages.
        var names: [String] = []
        let first = try client.readdir(dir, count: 1024).get("READDIR page 1")
        names += first.entries.map { String(decoding: $0.name, as: UTF8.self) }
        #expect(!first.eof)
        let savedCookie = try #require(first.entries.last?.cookie)
        let savedVerifier = first.cookieverf
        // Another client changes the directory in between: removes a name already returned,
        // and one not yet returned, and adds one.
        let other = try NFSTestClient(server: self.server)
        let otherDir = try other.handle("big")
        let returned = try #require(names.first { $0.hasPrefix("entry-") })
        _ = try other.remove(returned, in: otherDir).get("REMOVE returned")
        let allNames = (0..<200).map { "entry-\(String(format: "%03d", $0))" }
        let notYet = try #require(allNames.first { !names.contains($0) && $0 != returned })
        _ = try other.remove(notYet, in: otherDir).get("REMOVE pending")
        // ... and the server restarts.
        try self.server.restart()
        client = try NFSTestClient(server: self.server)
        dir = try client.handle("big")
        var cookie = savedCookie
        var verifier = savedVerifier
        for _ in 0..<1000 {
            let page = try client.readdir(dir, cookie: cookie, verifier: verifier, count: 1024).get("READDIR resume")
            names += page.entries.map { String(decoding: $0.name, as: UTF8.self) }
            if page.eof { break }
            cookie = try #require(page.entries.last?.cookie)
            verifier = page.cookieverf
        }
        let listed = names.filter { $0.hasPrefix("entry-") }
        #expect(Set(listed).count == listed.count, "a name was returned twice")
        #expect(!listed.contains(notYet), "a name removed before it was reached was returned")
        let expected = Set(allNames).subtracting([notYet])
        #expect(Set(listed) == expected, "missing: \(expected.subtracting(listed).sorted().prefix(5))")
    }

    /// After a restart every client's first calls arrive together and open the layers at once;
    /// none may fail (the VM suite saw "database is locked" → NFS3ERR_IO here).
    @Test func concurrentFirstCallsAfterARestartAllSucceed() throws {
        let client = try NFSTestClient(server: self.server)
        let handles = try (0..<8).map { index in try #require(try client.create("c\(index)").get().obj.handle) }
        for attempt in 0..<3 {
            try self.server.restart()
            let clients = try (0..<8).map { _ in
                try RPCClient(
                    host: "127.0.0.1", port: self.server.nfsPort, transport: .tcp,
                    credential: .sys(AuthSysParameters(stamp: 0, machineName: "c", uid: 0, gid: 0, groups: [])),
                    timeout: .seconds(20))
            }
            let statuses = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 8) { index in
                var status = "?"
                if let reply = try? clients[index].call(
                    program: NFS3.program, version: 3, procedure: NFS3Procedure.getattr.rawValue,
                    arguments: xdrEncoded(GetAttr3Args(object: handles[index])))
                {
                    var body = reply.body
                    status = (try? GetAttr3Res(xdr: &body)).map { "\($0.status)" } ?? "undecodable"
                }
                statuses.withLock { $0.append(status) }
            }
            #expect(
                statuses.withLock { $0 } == Array(repeating: "ok", count: 8),
                "attempt \(attempt): \(statuses.withLock { $0 })\n\(self.server.log.suffix(2000))")
            for client in clients { client.close() }
        }
    }

    @Test func commitAfterARestartReportsANewVerifier() throws {
        var client = try NFSTestClient(server: self.server)
        let file = try #require(try client.create("unstable").get().obj.handle)
        let written = try client.write(file, Array(repeating: 0x61, count: 10000), stable: .unstable).get(
            "WRITE UNSTABLE")
        let before: Commit3Res = try client.call(.commit, Commit3Args(file: file, offset: 0, count: 0))
        #expect(try before.get().verf == written.verf, "COMMIT in the same server life keeps the verifier")
        try self.server.restart()
        client = try NFSTestClient(server: self.server)
        let after: Commit3Res = try client.call(.commit, Commit3Args(file: file, offset: 0, count: 0))
        #expect(try after.get("COMMIT after restart").verf != written.verf, "the write verifier must change on restart")
        // The handle survived the restart.
        #expect(try client.getattr(file).get().objAttributes.size == 10000)
    }

    @Test func retransmittedRemoveIsAnsweredFromTheDuplicateRequestCache() throws {
        let client = try NFSTestClient(server: self.server)
        _ = try client.create("doomed").get()
        let xid: UInt32 = 0x5eed_0001
        let first = try client.remove("doomed", xid: xid)
        #expect(first.status == .ok)
        // Same xid, same arguments, same connection: the original reply, not NOENT.
        let again = try client.remove("doomed", xid: xid)
        #expect(again.status == .ok, "the retransmission was executed again: \(again.status)")
        // A new call (new xid) does see the name gone.
        #expect(try client.remove("doomed").status == .noent)
    }

    @Test func removingALowerFileLeavesAWhiteoutAndTheLowerIntact() throws {
        let client = try NFSTestClient(server: self.server)
        let shared = try client.handle("shared")
        #expect(try client.remove("in-both", in: shared).status == .ok)
        #expect(try client.lookup("in-both", in: shared).status == .noent)
        #expect(self.directory.exists("lower1/shared/in-both") && self.directory.exists("lower2/shared/in-both"))
        try self.server.restart()
        let again = try NFSTestClient(server: self.server)
        #expect(
            try again.lookup("in-both", in: try again.handle("shared")).status == .noent,
            "the whiteout did not survive a restart")
    }

    @Test(arguments: [
        (".", NFSStatus3.exist), ("..", .exist), ("a/b", .inval), ("nul\u{0}", .inval),
        (String(repeating: "n", count: 256), .nametoolong),
    ])
    func badNamesGetTheRightError(name: String, status: NFSStatus3) throws {
        let client = try NFSTestClient(server: self.server)
        let result = try client.create(name)
        #expect(result.status != .ok, "CREATE \(name.prefix(10)) succeeded")
        #expect(
            result.status == status || (name == "." || name == "..") && result.status == .inval,
            "CREATE \(name.prefix(10)): \(result.status)")
    }

    @Test func malformedAndForeignHandlesAreRefused() throws {
        let client = try NFSTestClient(server: self.server)
        #expect(try client.getattr(FileHandle3([1, 2, 3])).status == .badhandle)
        var forged = client.root.data
        forged[1] ^= 0xff  // another export identifier
        #expect(try client.getattr(FileHandle3(forged)).status == .stale)
        // A removed object's handle is stale.
        let file = try #require(try client.create("gone").get().obj.handle)
        _ = try client.remove("gone").get()
        #expect(try client.getattr(file).status == .stale)
    }

    @Test func garbageArgumentsGetGarbageArgs() throws {
        let client = try NFSTestClient(server: self.server)
        var junk = ByteBuffer()
        junk.writeInteger(UInt32(0xffff_ffff))
        let reply = try client.rpc.call(
            program: NFS3.program, version: 3, procedure: NFS3Procedure.lookup.rawValue, arguments: junk)
        #expect(reply.status == .garbageArguments)
        let mismatch = try client.rpc.call(program: NFS3.program, version: 2, procedure: 0)
        #expect(mismatch.status == .programMismatch(low: 3, high: 3))
    }

    @Test func secureExportRefusesUnprivilegedPorts() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig(clients: "\"127.0.0.0/8(rw)\""))
        defer { server.stop() }
        #expect(throws: NFSTestClient.MountRefused.self) { try NFSTestClient(server: server) }
        let privileged = try NFSTestClient(server: server, localPort: .privileged)
        #expect(try privileged.getattr(privileged.root).status == .ok)
        // The same handle from an unprivileged port: AUTH_TOOWEAK.
        let rpc = try RPCClient(
            host: "127.0.0.1", port: server.nfsPort, transport: .tcp,
            credential: .sys(AuthSysParameters(stamp: 0, machineName: "x", uid: 0, gid: 0, groups: [])))
        let reply = try rpc.call(
            program: NFS3.program, version: 3, procedure: NFS3Procedure.getattr.rawValue,
            arguments: xdrEncoded(GetAttr3Args(object: privileged.root)))
        #expect(reply.status == .authError(.tooWeak))
    }

    @Test func noDescriptorsLeakOverManyOperations() throws {
        let client = try NFSTestClient(server: self.server)
        let before = self.server.openDescriptorCount
        for index in 0..<300 {
            let name = "leak-\(index)"
            let file = try #require(try client.create(name).get().obj.handle)
            _ = try client.write(file, Array("x".utf8)).get()
            _ = try client.readAll(file)
            _ = try client.remove(name).get()
        }
        _ = try client.readAll(try client.handle("etc/passwd"))
        let after = self.server.openDescriptorCount
        #expect(after <= before + 64, "descriptors grew from \(before) to \(after)")
    }
}
