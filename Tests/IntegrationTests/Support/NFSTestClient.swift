import Foundation
import NFS3
import NIOCore
import SunRPC
import SunRPCClient
import XDR

/// An NFSv3 client on the project's own RPC and XDR layers, for the procedures the libnfs tools
/// do not reach. Blocking; every call bounded by the RPC client's timeout.
final class NFSTestClient {
    let rpc: RPCClient
    let mountRPC: RPCClient
    let export: String
    private(set) var root = FileHandle3([])

    /// Connects to `server` from `localHost` (e.g. "127.0.0.2" to look like another client) and
    /// mounts `export`.
    convenience init(
        server: ServerProcess, export: String = "/union", localHost: String? = nil, transport: RPCTransport = .tcp,
        localPort: RPCSourcePort = .any, uid: UInt32 = 0, gid: UInt32 = 0, machineName: String = "testclient"
    ) throws {
        try self.init(
            nfsPort: server.nfsPort, mountPort: server.mountPort, export: export, localHost: localHost,
            transport: transport,
            localPort: localPort, uid: uid, gid: gid, machineName: machineName)
    }

    init(
        nfsPort: Int, mountPort: Int, export: String = "/union", localHost: String? = nil,
        transport: RPCTransport = .tcp,
        localPort: RPCSourcePort = .any, uid: UInt32 = 0, gid: UInt32 = 0, machineName: String = "testclient"
    ) throws {
        let credential = RPCCredential.sys(
            AuthSysParameters(stamp: 1, machineName: machineName, uid: uid, gid: gid, groups: []))
        self.rpc = try RPCClient(
            host: "127.0.0.1", port: nfsPort, transport: transport, localHost: localHost, localPort: localPort,
            credential: credential, timeout: .seconds(15))
        self.mountRPC = try RPCClient(
            host: "127.0.0.1", port: mountPort, transport: .tcp, localHost: localHost, localPort: localPort,
            credential: credential, timeout: .seconds(15))
        self.export = export
        self.root = try self.mount()
    }

    deinit {
        self.rpc.close()
        self.mountRPC.close()
    }

    /// MOUNT v3 MNT of the export; throws on a refusal.
    func mount() throws -> FileHandle3 {
        let reply = try self.mountRPC.call(
            program: Mount.program, version: 3, procedure: MountProcedure.mnt.rawValue,
            arguments: xdrEncoded(DirPath(self.export)))
        guard reply.status == .success else { throw HarnessError("MNT \(self.export): RPC status \(reply.status)") }
        var body = reply.body
        switch try MountRes3(xdr: &body) {
        case .ok(let ok): return ok.fhandle
        case .fail(let status): throw MountRefused(status: status)
        }
    }

    struct MountRefused: Error { var status: MountStatus3 }

    /// Calls an NFSv3 procedure and decodes its result.
    func call<Result: XDRDecodable>(
        _ procedure: NFS3Procedure, _ arguments: some XDREncodable, as: Result.Type = Result.self, xid: UInt32? = nil
    ) throws -> Result {
        let reply = try self.rpc.call(
            program: NFS3.program, version: 3, procedure: procedure.rawValue, arguments: xdrEncoded(arguments), xid: xid
        )
        guard reply.status == .success else { throw RPCRefused(status: reply.status) }
        var body = reply.body
        return try Result(xdr: &body)
    }

    struct RPCRefused: Error { var status: RPCReplyStatus }

    // MARK: Conveniences

    func lookup(_ name: String, in dir: FileHandle3? = nil) throws -> Lookup3Res {
        try self.call(.lookup, Lookup3Args(what: DirOpArgs3(dir: dir ?? self.root, name: Array(name.utf8))))
    }

    /// The handle of `path` (slash-separated, relative to the root); throws unless every step is OK.
    func handle(_ path: String) throws -> FileHandle3 {
        var current = self.root
        for component in path.split(separator: "/") {
            switch try self.lookup(String(component), in: current) {
            case .ok(let ok): current = ok.object
            case .fail(let status, _): throw HarnessError("LOOKUP \(component) of \(path): \(status)")
            }
        }
        return current
    }

    func getattr(_ handle: FileHandle3) throws -> GetAttr3Res {
        try self.call(.getattr, GetAttr3Args(object: handle))
    }

    func create(
        _ name: String, in dir: FileHandle3? = nil, how: CreateHow3 = .unchecked(SetAttributes3(mode: 0o644)),
        xid: UInt32? = nil
    ) throws -> Create3Res {
        try self.call(
            .create, Create3Args(where: DirOpArgs3(dir: dir ?? self.root, name: Array(name.utf8)), how: how), xid: xid)
    }

    func write(
        _ file: FileHandle3, offset: UInt64 = 0, _ bytes: [UInt8], stable: StableHow3 = .fileSync
    ) throws -> Write3Res {
        try self.call(.write, Write3Args(file: file, offset: offset, stable: stable, data: ByteBuffer(bytes: bytes)))
    }

    func read(_ file: FileHandle3, offset: UInt64 = 0, count: UInt32 = 1 << 20) throws -> Read3Res {
        try self.call(.read, Read3Args(file: file, offset: offset, count: count))
    }

    func remove(_ name: String, in dir: FileHandle3? = nil, xid: UInt32? = nil) throws -> Remove3Res {
        try self.call(.remove, Remove3Args(object: DirOpArgs3(dir: dir ?? self.root, name: Array(name.utf8))), xid: xid)
    }

    func readdir(
        _ dir: FileHandle3, cookie: UInt64 = 0, verifier: CookieVerifier3 = .zero, count: UInt32 = 8192
    ) throws -> ReadDir3Res {
        try self.call(.readdir, ReadDir3Args(dir: dir, cookie: cookie, cookieverf: verifier, count: count))
    }

    /// The contents of a whole file through READ.
    func readAll(_ file: FileHandle3) throws -> [UInt8] {
        var result: [UInt8] = []
        for _ in 0..<100_000 {
            switch try self.read(file, offset: UInt64(result.count)) {
            case .ok(let ok):
                result += ok.data.readableBytesView
                if ok.eof || ok.count == 0 { return result }
            case .fail(let status, _):
                throw HarnessError("READ: \(status)")
            }
        }
        throw HarnessError("READ did not reach eof")
    }
}

extension NFS3Result {
    /// The OK body, or a thrown error naming the status.
    func get(_ what: String = "") throws -> OK {
        switch self {
        case .ok(let body): return body
        case .fail(let status, _): throw HarnessError("\(what) failed: \(status)")
        }
    }
}
