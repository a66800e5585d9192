import Logging
import NFS3
import NIOCore
import Union
import XDR

/// The export a call works in, as the server core resolved it from a file handle: the union
/// namespace of the caller's export (and client), the caller's credentials after squashing, and
/// how to turn an object back into a wire file handle.
public struct NFS3Export: Sendable {
    public var namespace: UnionNamespace
    /// AUTH_SYS identity after root_squash / all_squash.
    public var credentials: Credentials
    /// `ro` rule or no writable upper: every change answers NFS3ERR_ROFS.
    public var isReadOnly: Bool
    /// The export's path, for logs.
    public var exportPath: String
    /// The caller's client key, for logs.
    public var clientKey: String
    /// The wire file handle (at most 64 bytes) for an object of this namespace.
    public var fileHandle: @Sendable (ObjectHandle) -> [UInt8]

    public init(
        namespace: UnionNamespace, credentials: Credentials, isReadOnly: Bool, exportPath: String, clientKey: String,
        fileHandle: @escaping @Sendable (ObjectHandle) -> [UInt8]
    ) {
        self.namespace = namespace
        self.credentials = credentials
        self.isReadOnly = isReadOnly
        self.exportPath = exportPath
        self.clientKey = clientKey
        self.fileHandle = fileHandle
    }

    /// Whether `other` is the same namespace (same export, same client): RENAME and LINK
    /// across namespaces answer NFS3ERR_XDEV, as knfsd does across exports.
    func isSameNamespace(as other: NFS3Export) -> Bool {
        self.namespace === other.namespace
    }
}

/// Why the server core refused a file handle before the call reached the union.
public enum NFS3HandleRejection: Error, Sendable, Equatable {
    /// Not a handle of ours: NFS3ERR_BADHANDLE.
    case badHandle
    /// The export is gone, the client was reset, or the object was removed: NFS3ERR_STALE.
    case stale
    /// No client rule admits the caller, or the handle is another client's: NFS3ERR_ACCES.
    case accessDenied
    /// `secure` export and an unprivileged source port: RPC AUTH_ERROR / AUTH_TOOWEAK.
    case tooWeak
    /// A credential flavor the export does not take: RPC AUTH_ERROR / AUTH_REJECTEDCRED.
    case unsupportedCredential
    /// The layer could not be opened: NFS3ERR_IO, logged.
    case layerUnavailable(String)
}

/// The answer to one NFS call before RPC framing; `NFS3Program` turns it into an `RPCReply`.
public enum NFS3Outcome: Sendable, Equatable {
    /// The XDR-encoded result (status and body).
    case success(ByteBuffer)
    /// The arguments did not decode: GARBAGE_ARGS.
    case garbageArguments
    /// Not an NFSv3 procedure: PROC_UNAVAIL.
    case procedureUnavailable
    /// RPC AUTH_ERROR with AUTH_TOOWEAK.
    case authTooWeak
    /// RPC AUTH_ERROR with AUTH_REJECTEDCRED.
    case authRejectedCredential
}

/// Sizes and constants the NFS service advertises (FSINFO) and enforces.
public struct NFS3Limits: Sendable {
    /// rtmax / rtpref: the largest READ the server answers in full (1 MiB).
    public var maxReadBytes: Int = 1 << 20
    /// wtmax / wtpref: the largest WRITE the server advertises (1 MiB).
    public var maxWriteBytes: Int = 1 << 20
    /// dtpref: the preferred READDIR request size (64 KiB).
    public var preferredReaddirBytes: Int = 64 << 10
    /// The largest WRITE payload accepted by the decoder: wtmax plus slack for clients that
    /// round up; larger is GARBAGE_ARGS before the payload is looked at.
    public var maxDecodedWriteBytes: Int { self.maxWriteBytes + 64 << 10 }

    public init() {}
}

/// The NFS version 3 service: decodes a call's arguments, resolves its file handles through
/// the server core, runs the procedure on the union namespace and encodes the result. One
/// handler per procedure lives in its own file of this folder.
///
/// Independent of the RPC transport so tests can drive it with encoded arguments;
/// `NFS3Program` adapts it to `RPCProgramHandler`.
public struct NFS3Service: Sendable {
    public var limits: NFS3Limits
    /// The write verifier of this server instance (RFC 1813 §3.3.7): it must change on every
    /// start, so a client holding UNSTABLE data resends it after a restart.
    public let writeVerifier: WriteVerifier3
    /// Told the bytes of every successful READ and WRITE (metrics).
    let didTransfer: @Sendable (_ procedure: NFS3Procedure, _ bytes: Int) -> Void

    public init(
        writeVerifier: UInt64,
        limits: NFS3Limits = NFS3Limits(),
        didTransfer: @escaping @Sendable (_ procedure: NFS3Procedure, _ bytes: Int) -> Void = { _, _ in }
    ) {
        self.limits = limits
        self.writeVerifier = WriteVerifier3(rawValue: writeVerifier)
        self.didTransfer = didTransfer
    }

    /// Handles one call.
    /// - Parameters:
    ///   - procedure: the RPC procedure number.
    ///   - arguments: the XDR-encoded arguments.
    ///   - logger: carries the call's metadata (xid, client).
    ///   - resolve: turns a wire file handle into the caller's export and the union object.
    public func handle(
        procedure rawProcedure: UInt32,
        arguments: inout ByteBuffer,
        logger: Logger,
        resolve: @escaping (FileHandle3) -> Result<(NFS3Export, ObjectHandle), NFS3HandleRejection>
    ) -> NFS3Outcome {
        guard let procedure = NFS3Procedure(rawValue: rawProcedure) else { return .procedureUnavailable }
        var logger = logger
        logger[metadataKey: "proc"] = "\(procedure.name)"
        let request = NFS3Request(service: self, procedure: procedure, logger: logger, resolve: resolve)
        switch procedure {
        case .null:
            return .success(ByteBuffer())
        case .getattr:
            return request.run(&arguments, GetAttr3Args.self, \.object, NFS3Void(), self.getattr)
        case .setattr:
            return request.run(&arguments, SetAttr3Args.self, \.object, SetAttr3ResFail(objWcc: .absent), self.setattr)
        case .lookup:
            return request.run(
                &arguments, Lookup3Args.self, \.what.dir, Lookup3ResFail(dirAttributes: .absent), self.lookup)
        case .access:
            return request.run(
                &arguments, Access3Args.self, \.object, Access3ResFail(objAttributes: .absent), self.access)
        case .readlink:
            return request.run(
                &arguments, ReadLink3Args.self, \.symlink, ReadLink3ResFail(symlinkAttributes: .absent), self.readlink)
        case .read:
            return request.run(&arguments, Read3Args.self, \.file, Read3ResFail(fileAttributes: .absent), self.read)
        case .write:
            let maxBytes = self.limits.maxDecodedWriteBytes
            return request.run(
                &arguments,
                decode: { (buffer: inout ByteBuffer) throws(XDRError) -> Write3Args in
                    try Write3Args(xdr: &buffer, maxDataBytes: maxBytes)
                },
                \.file, Write3ResFail(fileWcc: .absent), self.write)
        case .create:
            return request.run(&arguments, Create3Args.self, \.where.dir, Create3ResFail(dirWcc: .absent), self.create)
        case .mkdir:
            return request.run(&arguments, MkDir3Args.self, \.where.dir, MkDir3ResFail(dirWcc: .absent), self.mkdir)
        case .symlink:
            return request.run(
                &arguments, Symlink3Args.self, \.where.dir, Symlink3ResFail(dirWcc: .absent), self.symlink)
        case .mknod:
            return request.run(&arguments, MkNod3Args.self, \.where.dir, MkNod3ResFail(dirWcc: .absent), self.mknod)
        case .remove:
            return request.run(&arguments, Remove3Args.self, \.object.dir, Remove3ResFail(dirWcc: .absent), self.remove)
        case .rmdir:
            return request.run(&arguments, RmDir3Args.self, \.object.dir, RmDir3ResFail(dirWcc: .absent), self.rmdir)
        case .rename:
            return request.run(
                &arguments, Rename3Args.self, \.from.dir, Rename3ResFail(fromdirWcc: .absent, todirWcc: .absent),
                self.rename)
        case .link:
            return request.run(
                &arguments, Link3Args.self, \.file, Link3ResFail(fileAttributes: .absent, linkdirWcc: .absent),
                self.link)
        case .readdir:
            return request.run(
                &arguments, ReadDir3Args.self, \.dir, ReadDir3ResFail(dirAttributes: .absent), self.readdir)
        case .readdirplus:
            return request.run(
                &arguments, ReadDirPlus3Args.self, \.dir, ReadDirPlus3ResFail(dirAttributes: .absent),
                self.readdirplus)
        case .fsstat:
            return request.run(
                &arguments, FSStat3Args.self, \.fsroot, FSStat3ResFail(objAttributes: .absent), self.fsstat)
        case .fsinfo:
            return request.run(
                &arguments, FSInfo3Args.self, \.fsroot, FSInfo3ResFail(objAttributes: .absent), self.fsinfo)
        case .pathconf:
            return request.run(
                &arguments, PathConf3Args.self, \.object, PathConf3ResFail(objAttributes: .absent), self.pathconf)
        case .commit:
            return request.run(&arguments, Commit3Args.self, \.file, Commit3ResFail(fileWcc: .absent), self.commit)
        }
    }
}

/// One call on its way through `NFS3Service.handle`, before its primary file handle is resolved.
struct NFS3Request {
    let service: NFS3Service
    let procedure: NFS3Procedure
    let logger: Logger
    let resolve: (FileHandle3) -> Result<(NFS3Export, ObjectHandle), NFS3HandleRejection>

    /// Decodes arguments of an `XDRDecodable` type; see `run(_:decode:_:_:_:)`.
    func run<Args: XDRDecodable, OK, Fail>(
        _ arguments: inout ByteBuffer,
        _ type: Args.Type,
        _ primary: KeyPath<Args, FileHandle3>,
        _ rejectedBody: Fail,
        _ body: (Args, NFS3Scope, ObjectHandle) -> NFS3Result<OK, Fail>
    ) -> NFS3Outcome {
        self.run(
            &arguments, decode: { (buffer: inout ByteBuffer) throws(XDRError) -> Args in try Args(xdr: &buffer) },
            primary, rejectedBody, body)
    }

    /// Decodes the arguments, resolves the file handle `primary` names, and runs `body`; a
    /// rejected handle answers its status with `rejectedBody` (no attributes: the object is not
    /// ours to describe).
    func run<Args, OK, Fail>(
        _ arguments: inout ByteBuffer,
        decode: (inout ByteBuffer) throws(XDRError) -> Args,
        _ primary: KeyPath<Args, FileHandle3>,
        _ rejectedBody: Fail,
        _ body: (Args, NFS3Scope, ObjectHandle) -> NFS3Result<OK, Fail>
    ) -> NFS3Outcome {
        let args: Args
        do {
            args = try decode(&arguments)
        } catch {
            self.logger.debug("NFS arguments could not be decoded", metadata: ["error": "\(error)"])
            return .garbageArguments
        }
        switch self.resolve(args[keyPath: primary]) {
        case .success(let (export, object)):
            var logger = self.logger
            logger[metadataKey: "export"] = "\(export.exportPath)"
            logger[metadataKey: "client_key"] = "\(export.clientKey)"
            let scope = NFS3Scope(
                service: self.service, export: export, procedure: self.procedure, logger: logger,
                resolveHandle: self.resolve)
            return .success(xdrEncoded(body(args, scope, object)))
        case .failure(let rejection):
            switch rejection {
            case .tooWeak:
                return .authTooWeak
            case .unsupportedCredential:
                return .authRejectedCredential
            case .badHandle, .stale, .accessDenied, .layerUnavailable:
                let status = NFS3Scope.status(for: rejection, logger: self.logger)
                return .success(xdrEncoded(NFS3Result<OK, Fail>.fail(status, rejectedBody)))
            }
        }
    }
}
