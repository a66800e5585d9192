// NFS3Client: an asynchronous NFSv3 (RFC 1813), MOUNT v3 and portmapper GETPORT client on
// SwiftNIO and the project's own XDR, NFS3 and SunRPC message types. It exists to generate
// load (`strata bench`, the boot-storm replay) and to drive servers from tests, so it is built
// to cost little CPU per call, not to be a file system client: no caches, no retransmission.
//
// Use:
//
//     let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
//     let client = try await NFS3Client.connect(
//         host: "127.0.0.1", nfsPort: 2049, mountPort: 20048,      // nil: ask the portmapper (port 111)
//         sourceAddress: "127.0.0.42",                            // the server sees client 127.0.0.42
//         credential: .unix(uid: 1000, gid: 1000), group: group)
//     let root = try await client.mount("/union")                 // MNT over its own connection, same source
//     let etc = try await client.lookup("etc", in: root).object
//     let attributes = try await client.getattr(etc)
//     let handle = try await client.resolve("usr/share/doc", from: root)
//     try await client.close()
//
// - Many calls in flight per connection: every call gets an xid; replies are matched by xid
//   in whatever order they come; record marking both ways. One `NFS3Client` is one TCP
//   connection; open as many as needed (each from its own source address if wanted).
// - Two forms of every call. The `async` methods (`getattr`, `lookup`, `read`, ...) return the
//   procedure's resok body and throw `NFS3ClientError.nfs(status, procedure:)` for any status
//   but NFS3_OK. `call(_:_:as:)` returns an `EventLoopFuture` of the raw `XXX3res` union (no
//   throw on an NFS error) and is the cheap path: used from the connection's event loop
//   (`client.eventLoop`, e.g. in a previous reply's callback) it costs no thread hop at all.
// - Failures are typed (`NFS3ClientError`): an NFS status, a MOUNT status, an RPC refusal
//   (`RPCReplyStatus`: AUTH_ERROR, PROG_UNAVAIL...), a closed connection (every call in flight
//   fails at once, none hangs), a timeout (`timeout` bounds every call; nil waits forever),
//   a malformed reply.
// - Credentials: AUTH_SYS (`.unix(uid:gid:groups:)`) or AUTH_NONE per connection, or per call
//   (`credential:` of `call`).

import NFS3
import NIOCore
import NIOPosix
import SunRPC
import XDR

extension RPCCredential {
    /// An AUTH_SYS credential (RFC 5531 §14).
    public static func unix(
        uid: UInt32, gid: UInt32, groups: [UInt32] = [], machineName: String = "strata-bench"
    ) -> RPCCredential {
        .sys(AuthSysParameters(machineName: machineName, uid: uid, gid: gid, groups: groups))
    }
}

extension NFS3Result {
    /// The resok body, or `NFS3ClientError.nfs` with the status.
    @inlinable
    public func ok(_ procedure: NFS3Procedure) throws(NFS3ClientError) -> OK {
        switch self {
        case .ok(let body): return body
        case .fail(let status, _): throw NFS3ClientError.nfs(status, procedure: procedure)
        }
    }
}

/// The portmapper (RFC 1833 §3, version 2): GETPORT only.
public enum Portmapper {
    public static let program: UInt32 = 100_000
    public static let version: UInt32 = 2
    public static let port = 111
    static let getportProcedure: UInt32 = 3
    static let protocolTCP: UInt32 = 6

    /// The TCP port `program` `version` is registered on at `host`'s portmapper.
    public static func getport(
        host: String, program: UInt32, version: UInt32, sourceAddress: String? = nil,
        timeout: TimeAmount? = .seconds(10), group: EventLoopGroup
    ) -> EventLoopFuture<Int> {
        RPCConnection.connect(
            host: host, port: Self.port, sourceAddress: sourceAddress, credential: .none, timeout: timeout, group: group
        ).flatMap { connection in
            connection.call(program: Self.program, version: Self.version, procedure: Self.getportProcedure) { buffer in
                buffer.writeXDR(program)
                buffer.writeXDR(version)
                buffer.writeXDR(Self.protocolTCP)
                buffer.writeXDR(UInt32(0))
            }.flatMapThrowing { reply -> Int in
                var reply = reply
                guard let port = try? reply.readXDRUInt32() else {
                    throw NFS3ClientError.malformedReply("GETPORT reply has no port")
                }
                guard port != 0 else { throw NFS3ClientError.notRegistered(program: program, version: version) }
                return Int(port)
            }.always { _ in _ = connection.close() }
        }
    }
}

/// One NFSv3 connection (plus what is needed to MNT from the same source address).
public final class NFS3Client: Sendable {
    /// The RPC connection to the NFS port.
    public let rpc: RPCConnection
    public let host: String
    public let mountPort: Int?
    public let sourceAddress: String?
    public let sourcePort: RPCSourcePortChoice
    public let timeout: TimeAmount?
    let group: EventLoopGroup

    /// The event loop of this connection: calls made on it, and callbacks of its futures,
    /// need no thread hop.
    public var eventLoop: EventLoop { self.rpc.eventLoop }

    init(
        rpc: RPCConnection, host: String, mountPort: Int?, sourceAddress: String?, sourcePort: RPCSourcePortChoice,
        timeout: TimeAmount?, group: EventLoopGroup
    ) {
        self.rpc = rpc
        self.host = host
        self.mountPort = mountPort
        self.sourceAddress = sourceAddress
        self.sourcePort = sourcePort
        self.timeout = timeout
        self.group = group
    }

    /// Connects to the NFS server at `host`. A nil `nfsPort` is asked from the portmapper now;
    /// a nil `mountPort` when `mount` is called.
    public static func connect(
        host: String, nfsPort: Int? = nil, mountPort: Int? = nil, sourceAddress: String? = nil,
        sourcePort: RPCSourcePortChoice = .any, credential: RPCCredential = .unix(uid: 0, gid: 0),
        timeout: TimeAmount? = .seconds(30), group: EventLoopGroup
    ) -> EventLoopFuture<NFS3Client> {
        let port: EventLoopFuture<Int> =
            nfsPort.map { group.next().makeSucceededFuture($0) }
            ?? Portmapper.getport(
                host: host, program: NFS3.program, version: NFS3.version, sourceAddress: sourceAddress, group: group)
        return port.flatMap { port in
            RPCConnection.connect(
                host: host, port: port, sourceAddress: sourceAddress, sourcePort: sourcePort, credential: credential,
                timeout: timeout, group: group)
        }.map { rpc in
            NFS3Client(
                rpc: rpc, host: host, mountPort: mountPort, sourceAddress: sourceAddress, sourcePort: sourcePort,
                timeout: timeout, group: group)
        }
    }

    /// As `connect`, awaited.
    public static func connect(
        host: String, nfsPort: Int? = nil, mountPort: Int? = nil, sourceAddress: String? = nil,
        sourcePort: RPCSourcePortChoice = .any, credential: RPCCredential = .unix(uid: 0, gid: 0),
        timeout: TimeAmount? = .seconds(30), group: EventLoopGroup
    ) async throws -> NFS3Client {
        try await Self.connect(
            host: host, nfsPort: nfsPort, mountPort: mountPort, sourceAddress: sourceAddress, sourcePort: sourcePort,
            credential: credential, timeout: timeout, group: group
        ).get()
    }

    /// MNT (MOUNT v3) of `path` over a short-lived connection to the MOUNT port from this
    /// client's source address, with this client's credential; returns the root handle.
    public func mountFuture(_ path: String) -> EventLoopFuture<FileHandle3> {
        let port: EventLoopFuture<Int> =
            self.mountPort.map { self.eventLoop.makeSucceededFuture($0) }
            ?? Portmapper.getport(
                host: self.host, program: Mount.program, version: Mount.version3, sourceAddress: self.sourceAddress,
                group: self.group)
        let credential = self.rpc.credential
        return port.flatMap { port in
            RPCConnection.connect(
                host: self.host, port: port, sourceAddress: self.sourceAddress, sourcePort: self.sourcePort,
                credential: credential, timeout: self.timeout, group: self.eventLoop)
        }.flatMap { mount in
            mount.call(program: Mount.program, version: Mount.version3, procedure: MountProcedure.mnt.rawValue) {
                DirPath(path).encode(xdr: &$0)
            }.flatMapThrowing { reply -> FileHandle3 in
                var reply = reply
                let result: MountRes3
                do { result = try MountRes3(xdr: &reply) } catch {
                    throw NFS3ClientError.malformedReply("MNT reply: \(error)")
                }
                switch result {
                case .ok(let ok): return ok.fhandle
                default: throw NFS3ClientError.mount(result.status, path: path)
                }
            }.always { _ in _ = mount.close() }
        }
    }

    /// MNT of `path`; returns the export's root handle.
    public func mount(_ path: String) async throws -> FileHandle3 {
        try await self.mountFuture(path).get()
    }

    /// Closes the connection.
    public func close() async throws {
        try await self.rpc.close().get()
    }

    // MARK: The cheap path

    /// Sends `procedure` with `arguments` and decodes the reply as `Result` (the procedure's
    /// `XXX3res`, so an NFS error status is a value, not a failure). `payload` (WRITE data) is
    /// sent after the arguments without a copy; pass `Write3Args` with an empty `data` and the
    /// real `count`, and the payload here.
    @inlinable
    public func call<Result: XDRDecodable>(
        _ procedure: NFS3Procedure, _ arguments: some XDREncodable, payload: ByteBuffer? = nil,
        credential: RPCCredential? = nil, as: Result.Type = Result.self
    ) -> EventLoopFuture<Result> {
        self.call(procedure, arguments, payload: payload, credential: credential) { reply in try Result(xdr: &reply) }
    }

    /// As `call(_:_:as:)`, with the reply's results handed to `decode` (on the event loop):
    /// decoding and checking in one step, one future per call fewer. An `XDRError` thrown by
    /// `decode` becomes `.malformedReply`; any other error fails the future as is.
    @inlinable
    public func call<Value>(
        _ procedure: NFS3Procedure, _ arguments: some XDREncodable, payload: ByteBuffer? = nil,
        credential: RPCCredential? = nil, decoding decode: @escaping @Sendable (inout ByteBuffer) throws -> Value
    ) -> EventLoopFuture<Value> {
        self.rpc.call(
            program: NFS3.program, version: NFS3.version, procedure: procedure.rawValue, credential: credential,
            payload: payload
        ) { arguments.encode(xdr: &$0) }
        .flatMapThrowing { reply in
            var reply = reply
            do {
                return try decode(&reply)
            } catch let error as XDRError {
                throw NFS3ClientError.malformedReply("\(procedure.name) reply: \(error)")
            }
        }
    }

    /// A WRITE whose data is sent straight from `data` (no copy into the request).
    public func writeCall(
        _ file: FileHandle3, offset: UInt64, data: ByteBuffer, stable: StableHow3
    ) -> EventLoopFuture<Write3Res> {
        let count = UInt32(data.readableBytes)
        return self.rpc.call(
            program: NFS3.program, version: NFS3.version, procedure: NFS3Procedure.write.rawValue, payload: data
        ) { buffer in
            file.encode(xdr: &buffer)
            buffer.writeXDR(offset)
            buffer.writeXDR(count)
            stable.encode(xdr: &buffer)
            buffer.writeXDR(count)  // opaque data<>: the length word; the bytes follow as payload
        }.flatMapThrowing { reply in
            var reply = reply
            do { return try Write3Res(xdr: &reply) } catch {
                throw NFS3ClientError.malformedReply("WRITE reply: \(error)")
            }
        }
    }

    // MARK: Typed calls (async; throw on any status but NFS3_OK)

    private func ok<OK, Fail>(
        _ procedure: NFS3Procedure, _ arguments: some XDREncodable, as: NFS3Result<OK, Fail>.Type
    ) async throws -> OK {
        try await self.call(procedure, arguments, as: NFS3Result<OK, Fail>.self).get().ok(procedure)
    }

    public func null() async throws {
        _ = try await self.call(.null, NFS3Void(), as: NFS3Void.self).get()
    }

    public func getattr(_ object: FileHandle3) async throws -> FileAttributes3 {
        try await self.ok(.getattr, GetAttr3Args(object: object), as: GetAttr3Res.self).objAttributes
    }

    public func setattr(
        _ object: FileHandle3, _ attributes: SetAttributes3, guardCtime: NFSTime3? = nil
    ) async throws -> WccData {
        try await self.ok(
            .setattr, SetAttr3Args(object: object, newAttributes: attributes, guardCtime: guardCtime),
            as: SetAttr3Res.self
        ).objWcc
    }

    public func lookup(_ name: String, in dir: FileHandle3) async throws -> Lookup3ResOK {
        try await self.ok(.lookup, Lookup3Args(what: DirOpArgs3(dir: dir, name: Array(name.utf8))), as: Lookup3Res.self)
    }

    /// Looks up each component of the slash-separated `path` from `root` ("" or "/": root).
    public func resolve(_ path: String, from root: FileHandle3) async throws -> FileHandle3 {
        var handle = root
        for component in path.split(separator: "/") where component != "." {
            handle = try await self.lookup(String(component), in: handle).object
        }
        return handle
    }

    public func access(_ object: FileHandle3, _ access: Access3) async throws -> Access3ResOK {
        try await self.ok(.access, Access3Args(object: object, access: access.rawValue), as: Access3Res.self)
    }

    public func readlink(_ symlink: FileHandle3) async throws -> [UInt8] {
        try await self.ok(.readlink, ReadLink3Args(symlink: symlink), as: ReadLink3Res.self).data
    }

    public func read(_ file: FileHandle3, offset: UInt64, count: UInt32) async throws -> Read3ResOK {
        try await self.ok(.read, Read3Args(file: file, offset: offset, count: count), as: Read3Res.self)
    }

    public func write(
        _ file: FileHandle3, offset: UInt64, data: ByteBuffer, stable: StableHow3
    ) async throws -> Write3ResOK {
        try await self.writeCall(file, offset: offset, data: data, stable: stable).get().ok(.write)
    }

    public func commit(_ file: FileHandle3, offset: UInt64 = 0, count: UInt32 = 0) async throws -> Commit3ResOK {
        try await self.ok(.commit, Commit3Args(file: file, offset: offset, count: count), as: Commit3Res.self)
    }

    /// CREATE; the handle comes from the reply, or (a server may omit it) from a LOOKUP.
    public func create(
        _ name: String, in dir: FileHandle3, how: CreateHow3 = .unchecked(SetAttributes3(mode: 0o644))
    ) async throws -> FileHandle3 {
        let result = try await self.ok(
            .create, Create3Args(where: DirOpArgs3(dir: dir, name: Array(name.utf8)), how: how), as: Create3Res.self)
        if let handle = result.obj.handle { return handle }
        return try await self.lookup(name, in: dir).object
    }

    /// MKDIR; the handle comes from the reply, or from a LOOKUP.
    public func mkdir(
        _ name: String, in dir: FileHandle3, attributes: SetAttributes3 = SetAttributes3(mode: 0o755)
    ) async throws
        -> FileHandle3
    {
        let result = try await self.ok(
            .mkdir, MkDir3Args(where: DirOpArgs3(dir: dir, name: Array(name.utf8)), attributes: attributes),
            as: MkDir3Res.self)
        if let handle = result.obj.handle { return handle }
        return try await self.lookup(name, in: dir).object
    }

    public func symlink(_ name: String, in dir: FileHandle3, target: String) async throws -> FileHandle3? {
        try await self.ok(
            .symlink,
            Symlink3Args(
                where: DirOpArgs3(dir: dir, name: Array(name.utf8)),
                symlink: SymlinkData3(symlinkAttributes: SetAttributes3(), symlinkData: Array(target.utf8))),
            as: Symlink3Res.self
        ).obj.handle
    }

    public func remove(_ name: String, in dir: FileHandle3) async throws {
        _ = try await self.ok(
            .remove, Remove3Args(object: DirOpArgs3(dir: dir, name: Array(name.utf8))), as: Remove3Res.self)
    }

    public func rmdir(_ name: String, in dir: FileHandle3) async throws {
        _ = try await self.ok(
            .rmdir, RmDir3Args(object: DirOpArgs3(dir: dir, name: Array(name.utf8))), as: RmDir3Res.self)
    }

    public func rename(_ name: String, in dir: FileHandle3, to newName: String, in newDir: FileHandle3) async throws {
        _ = try await self.ok(
            .rename,
            Rename3Args(
                from: DirOpArgs3(dir: dir, name: Array(name.utf8)),
                to: DirOpArgs3(dir: newDir, name: Array(newName.utf8))),
            as: Rename3Res.self)
    }

    /// One READDIRPLUS page.
    public func readdirplus(
        _ dir: FileHandle3, cookie: UInt64 = 0, verifier: CookieVerifier3 = .zero, dircount: UInt32 = 8192,
        maxcount: UInt32 = 65536
    ) async throws -> ReadDirPlus3ResOK {
        try await self.ok(
            .readdirplus,
            ReadDirPlus3Args(dir: dir, cookie: cookie, cookieverf: verifier, dircount: dircount, maxcount: maxcount),
            as: ReadDirPlus3Res.self)
    }

    /// Every entry of `dir` (all READDIRPLUS pages), "." and ".." left out.
    public func listDirectory(
        _ dir: FileHandle3, dircount: UInt32 = 8192, maxcount: UInt32 = 65536
    ) async throws -> [EntryPlus3] {
        var entries: [EntryPlus3] = []
        var cookie: UInt64 = 0
        var verifier = CookieVerifier3.zero
        // Bounded: a server that never says eof cannot keep us here (2^20 pages).
        for _ in 0..<(1 << 20) {
            let page = try await self.readdirplus(
                dir, cookie: cookie, verifier: verifier, dircount: dircount, maxcount: maxcount)
            for entry in page.entries where entry.name != [0x2e] && entry.name != [0x2e, 0x2e] {
                entries.append(entry)
            }
            if page.eof { return entries }
            guard let last = page.entries.last else {
                throw NFS3ClientError.malformedReply("READDIRPLUS page with no entries and no eof")
            }
            cookie = last.cookie
            verifier = page.cookieverf
        }
        throw NFS3ClientError.malformedReply("READDIRPLUS never reached eof")
    }

    public func fsinfo(_ root: FileHandle3) async throws -> FSInfo3ResOK {
        try await self.ok(.fsinfo, FSInfo3Args(fsroot: root), as: FSInfo3Res.self)
    }

    public func fsstat(_ root: FileHandle3) async throws -> FSStat3ResOK {
        try await self.ok(.fsstat, FSStat3Args(fsroot: root), as: FSStat3Res.self)
    }
}
