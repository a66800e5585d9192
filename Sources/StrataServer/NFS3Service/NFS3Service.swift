import Logging
import NFS3
import NIOCore
import SunRPC
import Union
import XDR

/// The answer to one NFS call before RPC framing; `NFS3Program` turns it into an `RPCReply`.
public enum NFS3Outcome: Sendable, Equatable {
    /// The XDR-encoded result (status and body).
    case success(ByteBuffer)
    /// The encoded result with a range of a file in the middle, sent from the file (a READ's data).
    case successFromFile(RPCFileResults)
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
    /// The largest READDIR and READDIRPLUS reply, whatever count the client asks (a count of
    /// 2^32-1 must not make an 18 MiB reply to a 120-byte call): 1 MiB, as knfsd's payload limit.
    public var maxReaddirReplyBytes: Int = 1 << 20
    /// The largest READ answered on the event loop by copying (from the page cache); larger ones are
    /// sent from the file where they can be (`minFileRangeReadBytes`), else copied on the pool. For a
    /// small READ the two thread hops cost more than the copy; a large READ's copy is the larger
    /// part, and on the pool it runs beside the event loop's socket writes, on another core
    /// (measured with 1 MiB READs on two busy cores, copying them inline cut the throughput by a
    /// third).
    public var maxInlineReadBytes: UInt32 = 64 << 10
    /// Larger READs, over TCP, are sent from the file (sendfile) when their data is in the page cache: no copy through
    /// the server's memory, and so, like the small ones, answered on the event loop.
    public var minFileRangeReadBytes: UInt32 { self.maxInlineReadBytes + 1 }
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
    ///   - logger: carries the call's metadata (xid, client), for calls refused before their
    ///     export is known.
    ///   - resolve: turns a wire file handle into the caller's export and the union object
    ///     (the server core: one decode and one namespace check per handle).
    ///   - sendsFileRanges: the transport sends results from files (`.successFromFile`: TCP).
    public func handle(
        procedure rawProcedure: UInt32,
        arguments: inout ByteBuffer,
        logger: @autoclosure @escaping () -> Logger,
        sendsFileRanges: Bool = false,
        resolve: (FileHandle3) -> Result<(ExportCall, ObjectHandle), CallRejection>
    ) -> NFS3Outcome {
        guard let procedure = NFS3Procedure(rawValue: rawProcedure) else { return .procedureUnavailable }
        let request = NFS3Request(
            service: self, procedure: procedure, makeLogger: logger, sendsFileRanges: sendsFileRanges)
        switch procedure {
        case .null:
            return .success(ByteBuffer())
        case .getattr:
            return request.run(&arguments, GetAttr3Args.self, \.object, NFS3Void(), resolve, self.getattr)
        case .setattr:
            return request.run(
                &arguments, SetAttr3Args.self, \.object, SetAttr3ResFail(objWcc: .absent), resolve, self.setattr)
        case .lookup:
            return request.run(
                &arguments, Lookup3Args.self, \.what.dir, Lookup3ResFail(dirAttributes: .absent), resolve, self.lookup)
        case .access:
            return request.run(
                &arguments, Access3Args.self, \.object, Access3ResFail(objAttributes: .absent), resolve, self.access)
        case .readlink:
            return request.run(
                &arguments, ReadLink3Args.self, \.symlink, ReadLink3ResFail(symlinkAttributes: .absent), resolve,
                self.readlink)
        case .read:
            return request.runRead(&arguments, resolve)
        case .write:
            let maxBytes = self.limits.maxDecodedWriteBytes
            return request.run(
                &arguments,
                decode: { (buffer: inout ByteBuffer) throws(XDRError) -> Write3Args in
                    try Write3Args(xdr: &buffer, maxDataBytes: maxBytes)
                },
                \.file, Write3ResFail(fileWcc: .absent), resolve, self.write)
        case .create:
            return request.run(
                &arguments, Create3Args.self, \.where.dir, Create3ResFail(dirWcc: .absent), resolve, self.create)
        case .mkdir:
            return request.run(
                &arguments, MkDir3Args.self, \.where.dir, MkDir3ResFail(dirWcc: .absent), resolve, self.mkdir)
        case .symlink:
            return request.run(
                &arguments, Symlink3Args.self, \.where.dir, Symlink3ResFail(dirWcc: .absent), resolve, self.symlink)
        case .mknod:
            return request.run(
                &arguments, MkNod3Args.self, \.where.dir, MkNod3ResFail(dirWcc: .absent), resolve, self.mknod)
        case .remove:
            return request.run(
                &arguments, Remove3Args.self, \.object.dir, Remove3ResFail(dirWcc: .absent), resolve, self.remove)
        case .rmdir:
            return request.run(
                &arguments, RmDir3Args.self, \.object.dir, RmDir3ResFail(dirWcc: .absent), resolve, self.rmdir)
        case .rename:
            return request.run(
                &arguments, Rename3Args.self, \.from.dir, Rename3ResFail(fromdirWcc: .absent, todirWcc: .absent),
                resolve,
                { (args, call, fromDir) in
                    self.rename(args, call, fromDir, request.resolveSecond(args.to.dir, of: call, resolve))
                })
        case .link:
            return request.run(
                &arguments, Link3Args.self, \.file, Link3ResFail(fileAttributes: .absent, linkdirWcc: .absent),
                resolve,
                { (args, call, file) in
                    self.link(args, call, file, request.resolveSecond(args.link.dir, of: call, resolve))
                })
        case .readdir:
            return request.run(
                &arguments, ReadDir3Args.self, \.dir, ReadDir3ResFail(dirAttributes: .absent), resolve, self.readdir)
        case .readdirplus:
            return request.runEncoding(
                &arguments, ReadDirPlus3Args.self, \.dir,
                ReadDirPlus3Res.fail(.stale, ReadDirPlus3ResFail(dirAttributes: .absent)), resolve, self.readdirplus)
        case .fsstat:
            return request.run(
                &arguments, FSStat3Args.self, \.fsroot, FSStat3ResFail(objAttributes: .absent), resolve, self.fsstat)
        case .fsinfo:
            return request.run(
                &arguments, FSInfo3Args.self, \.fsroot, FSInfo3ResFail(objAttributes: .absent), resolve, self.fsinfo)
        case .pathconf:
            return request.run(
                &arguments, PathConf3Args.self, \.object, PathConf3ResFail(objAttributes: .absent), resolve,
                self.pathconf)
        case .commit:
            return request.run(
                &arguments, Commit3Args.self, \.file, Commit3ResFail(fileWcc: .absent), resolve, self.commit)
        }
    }
}

extension NFS3Service {
    /// GETATTR, ACCESS and LOOKUP answered from the union's caches, and READ of up to
    /// `maxInlineReadBytes` from the page cache, without blocking, for the event loop
    /// (`NFS3Program.handleInline`): nil when the arguments do not decode, the handle does not
    /// resolve without blocking, the object (LOOKUP: the name) is not cached, or (READ) its data
    /// is not all in the page cache. A larger READ is answered only where the transport sends
    /// from files (`sendsFileRanges`), as a range of the file. `handle` answers those, with the
    /// same results this would have given.
    public func handleInline(
        procedure rawProcedure: UInt32, arguments: ByteBuffer, sendsFileRanges: Bool = false,
        resolve: (FileHandle3) -> (ExportCall, ObjectHandle)?
    ) -> NFS3Outcome? {
        var arguments = arguments
        switch NFS3Procedure(rawValue: rawProcedure) {
        case .getattr:
            guard let args = try? GetAttr3Args(xdr: &arguments), let (call, object) = resolve(args.object),
                let attributes = call.namespace.getattrIfCached(object)
            else { return nil }
            return .success(
                NFS3Request.encoded(GetAttr3Res.ok(GetAttr3ResOK(objAttributes: FileAttributes3(attributes)))))
        case .access:
            guard let args = try? Access3Args(xdr: &arguments), let (call, object) = resolve(args.object) else {
                return nil
            }
            let requested = AccessMask(rawValue: args.access & AccessMask.all.rawValue)
            guard let check = call.namespace.accessIfCached(object, requested, as: call.credentials) else { return nil }
            return .success(NFS3Request.encoded(self.accessResult(check, call)))
        case .lookup:
            guard let args = try? Lookup3Args(xdr: &arguments), let (call, dir) = resolve(args.what.dir),
                let answer = call.namespace.lookupIfCached(dir, args.what.name, as: call.credentials)
            else { return nil }
            return .success(NFS3Request.encoded(Self.lookupResult(answer, call, name: args.what.name)))
        case .read:
            guard let args = try? Read3Args(xdr: &arguments) else { return nil }
            if args.count >= self.limits.minFileRangeReadBytes {
                guard sendsFileRanges, let (call, object) = resolve(args.file),
                    let range = call.namespace.readRangeIfCached(
                        object, offset: args.offset, count: min(Int(args.count), self.limits.maxReadBytes),
                        as: call.credentials)
                else { return nil }
                return .successFromFile(self.readReply(range))
            }
            guard args.count <= self.limits.maxInlineReadBytes, let (call, object) = resolve(args.file),
                case .success(let reply)? = self.readReply(
                    args,
                    { buffer in
                        call.namespace.readIfCached(object, offset: args.offset, into: buffer, as: call.credentials)
                            .map { .success($0) }
                    })
            else { return nil }
            return .success(reply)
        default:
            return nil
        }
    }
}

extension NFS3Service {
    /// A read-only call `handleInline` could not answer from the caches (the first LOOKUP of a name in a namespace,
    /// the first GETATTR of an object, a listing, the first READ of a file), answered all the same, for the event
    /// loop, when no step of it would wait (`NoWaiting`: a lock a change holds, a flush, the sidecar, data not in the
    /// page cache, a namespace not open): then the reply `handle` gives. nil when a step would have waited, for a
    /// procedure that changes anything or reads data from the disk (`InlineMisses.mayAnswer`), and for answers the
    /// pool gives with their log lines (bad arguments, refused handles).
    public func handleWithoutWaiting(
        procedure rawProcedure: UInt32, arguments: ByteBuffer, logger: @autoclosure @escaping () -> Logger,
        sendsFileRanges: Bool = false, resolve: (FileHandle3) -> (ExportCall, ObjectHandle)?
    ) -> NFS3Outcome? {
        guard let procedure = NFS3Procedure(rawValue: rawProcedure), InlineMisses.mayAnswer(procedure),
            InlineMisses.isSmallEnough(procedure, arguments)
        else {
            return nil
        }
        let outcome = NoWaiting.attempt { () -> NFS3Outcome in
            var arguments = arguments
            return self.handle(
                procedure: rawProcedure, arguments: &arguments, logger: logger(), sendsFileRanges: sendsFileRanges,
                resolve: { handle in
                    guard let resolved = resolve(handle) else {
                        NoWaiting.decline()
                        return .failure(.stale)
                    }
                    return .success(resolved)
                })
        }
        switch outcome {
        case .success?, .successFromFile?: return outcome
        default: return nil
        }
    }
}

extension NFS3Service {
    /// A READ reply (RFC 1813 §3.3.6), encoded here rather than through `Read3ResOK`: `read` reads
    /// the file straight into the reply buffer, after room left for the status, attributes and
    /// lengths, so the data is copied once (by the kernel) between the file and the socket write.
    /// A count above rtmax is answered with rtmax bytes (a short read the client continues from),
    /// as the RFC allows. nil when `read` declines (answered inline only from the page cache); a
    /// failure is the caller's to encode.
    func readReply(
        _ args: Read3Args, _ read: (UnsafeMutableRawBufferPointer) -> Result<ReadResult, UnionError>?
    ) -> Result<ByteBuffer, UnionError>? {
        let count = min(Int(args.count), self.limits.maxReadBytes)
        // status, post_op_attr with attributes, count, eof, the opaque's length.
        let headerBytes = 4 + 4 + FileAttributes3.encodedSize + 4 + 4 + 4
        var reply = ByteBufferAllocator().buffer(capacity: headerBytes + count + 3)
        reply.moveWriterIndex(forwardBy: headerBytes)
        var outcome: Result<ReadResult, UnionError>?
        reply.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { space in
            outcome = read(UnsafeMutableRawBufferPointer(rebasing: space[0..<count]))
            guard case .success(let result)? = outcome else { return 0 }
            return result.count
        }
        switch outcome {
        case .success(let result)?:
            self.didTransfer(.read, result.count)
            let padding = (4 - result.count % 4) % 4
            reply.writeRepeatingByte(0, count: padding)
            var header = ByteBufferAllocator().buffer(capacity: headerBytes)
            header.writeXDR(NFSStatus3.ok.rawValue)
            PostOpAttr(FileAttributes3(result.attributes)).encode(xdr: &header)
            header.writeXDR(UInt32(truncatingIfNeeded: result.count))
            header.writeXDR(result.isEOF)
            header.writeXDR(UInt32(truncatingIfNeeded: result.count))
            precondition(header.readableBytes == headerBytes)
            reply.setBuffer(header, at: 0)
            return .success(reply)
        case .failure(let error)?: return .failure(error)
        case nil: return nil
        }
    }
}

extension NFS3Service {
    /// A READ reply (RFC 1813 §3.3.6) whose data is sent from the file: status, attributes, count, EOF and the
    /// opaque's length, then the range, then the XDR padding. The range's descriptor is the reply's from here on.
    func readReply(_ range: ReadRange) -> RPCFileResults {
        self.didTransfer(.read, range.count)
        var head = ByteBufferAllocator().buffer(capacity: 4 + 4 + FileAttributes3.encodedSize + 4 + 4 + 4)
        head.writeXDR(NFSStatus3.ok.rawValue)
        PostOpAttr(FileAttributes3(range.attributes)).encode(xdr: &head)
        head.writeXDR(UInt32(truncatingIfNeeded: range.count))
        head.writeXDR(range.isEOF)
        head.writeXDR(UInt32(truncatingIfNeeded: range.count))
        var tail = ByteBuffer()
        tail.writeRepeatingByte(0, count: (4 - range.count % 4) % 4)
        return RPCFileResults(
            head: head, file: RPCReplyFile(takingOwnershipOf: range.descriptor), offset: Int(range.offset),
            count: range.count, tail: tail)
    }
}

/// A second file handle of a call (RENAME's target directory, LINK's directory), resolved
/// like the first; it must be in the same namespace (NFS3ERR_XDEV otherwise, as knfsd answers
/// across exports).
enum SecondHandle {
    case resolved(ObjectHandle)
    case refused(NFSStatus3)
}

/// One call on its way through `NFS3Service.handle`, before its primary file handle is resolved.
struct NFS3Request {
    let service: NFS3Service
    let procedure: NFS3Procedure
    /// The call's logger, built only when something is logged (most calls never log).
    let makeLogger: () -> Logger
    /// The transport sends results from files (`NFS3Outcome.successFromFile`).
    var sendsFileRanges = false

    var logger: Logger { self.makeLogger() }

    /// Decodes arguments of an `XDRDecodable` type; see `run(_:decode:_:_:_:_:)`.
    func run<Args: XDRDecodable, OK, Fail>(
        _ arguments: inout ByteBuffer,
        _ type: Args.Type,
        _ primary: KeyPath<Args, FileHandle3>,
        _ rejectedBody: Fail,
        _ resolve: (FileHandle3) -> Result<(ExportCall, ObjectHandle), CallRejection>,
        _ body: (Args, ExportCall, ObjectHandle) -> NFS3Result<OK, Fail>
    ) -> NFS3Outcome {
        self.run(
            &arguments, decode: { (buffer: inout ByteBuffer) throws(XDRError) -> Args in try Args(xdr: &buffer) },
            primary, rejectedBody, resolve, body)
    }

    /// The call's arguments, or nil (logged) when they do not decode: the caller answers GARBAGE_ARGS.
    func decodeArguments<Args>(
        _ arguments: inout ByteBuffer, _ decode: (inout ByteBuffer) throws(XDRError) -> Args
    ) -> Args? {
        do {
            return try decode(&arguments)
        } catch {
            self.logger.debug("NFS arguments could not be decoded", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// As `decodeArguments(_:_:)`, for arguments that decode themselves.
    func decodeArguments<Args: XDRDecodable>(_ type: Args.Type, _ arguments: inout ByteBuffer) -> Args? {
        self.decodeArguments(&arguments) { (buffer: inout ByteBuffer) throws(XDRError) -> Args in try Args(xdr: &buffer)
        }
    }

    /// Decodes the arguments, resolves the file handle `primary` names, and runs `body`; a
    /// rejected handle answers its status with `rejectedBody` (no attributes: the object is not
    /// ours to describe).
    func run<Args, OK, Fail>(
        _ arguments: inout ByteBuffer,
        decode: (inout ByteBuffer) throws(XDRError) -> Args,
        _ primary: KeyPath<Args, FileHandle3>,
        _ rejectedBody: Fail,
        _ resolve: (FileHandle3) -> Result<(ExportCall, ObjectHandle), CallRejection>,
        _ body: (Args, ExportCall, ObjectHandle) -> NFS3Result<OK, Fail>
    ) -> NFS3Outcome {
        guard let args = self.decodeArguments(&arguments, decode) else { return .garbageArguments }
        switch resolve(args[keyPath: primary]) {
        case .success((var call, let object)):
            call.procedureName = self.procedure.name
            guard self.procedure.isNonIdempotent, RPCWorker.mayHoldReplies else {
                return .success(Self.encoded(body(args, call, object)))
            }
            let (result, pending) = DeferredDurability.deferring { body(args, call, object) }
            if let pending {
                Self.hold(until: pending, failure: NFS3Result<OK, Fail>.fail(.io, rejectedBody))
            }
            return .success(Self.encoded(result))
        case .failure(let rejection):
            return self.answer(rejection, NFS3Result<OK, Fail>.fail(.stale, rejectedBody))
        }
    }

    /// A change's reply leaves only once what it reports is durable: instead of sleeping until the group commit's
    /// flush covers it, the call asks the RPC layer to hold its reply until then, and its worker takes the next call.
    /// A flush that fails turns the reply into `failure` (NFS3ERR_IO, without attributes: the change may still
    /// become durable when a later flush retries it).
    static func hold<OK, Fail>(until pending: PendingDurability, failure: NFS3Result<OK, Fail>) {
        let failed = Self.encoded(failure)
        RPCWorker.holdReply(
            RPCReplyHold(
                whenReleased: { release in
                    pending.whenDurable { error in release(error == nil ? nil : .success(failed)) }
                },
                settle: { pending.flush() }))
    }

    /// The answer to a refused primary handle; `template` is the procedure's failure result,
    /// whose status is replaced.
    func answer<OK, Fail>(_ rejection: CallRejection, _ template: NFS3Result<OK, Fail>) -> NFS3Outcome {
        var logger = self.logger
        logger[metadataKey: "proc"] = "\(self.procedure.name)"
        switch RejectionAnswer(rejection, logger: logger) {
        case .authTooWeak: return .authTooWeak
        case .authRejectedCredential: return .authRejectedCredential
        case .status(let status):
            guard case .fail(_, let body) = template else { return .success(Self.encoded(template)) }
            return .success(Self.encoded(NFS3Result<OK, Fail>.fail(status, body)))
        }
    }

    func resolveSecond(
        _ handle: FileHandle3, of call: ExportCall,
        _ resolve: (FileHandle3) -> Result<(ExportCall, ObjectHandle), CallRejection>
    ) -> SecondHandle {
        switch resolve(handle) {
        case .success(let (other, object)):
            guard other.isSameNamespace(as: call) else { return .refused(.xdev) }
            return .resolved(object)
        case .failure(let rejection):
            return .refused(RejectionAnswer.secondHandle(rejection, logger: call.logger))
        }
    }

    /// READ on the pool: `readReply` with the union's blocking `read`.
    func runRead(
        _ arguments: inout ByteBuffer,
        _ resolve: (FileHandle3) -> Result<(ExportCall, ObjectHandle), CallRejection>
    ) -> NFS3Outcome {
        guard let args = self.decodeArguments(Read3Args.self, &arguments) else { return .garbageArguments }
        var call: ExportCall
        let object: ObjectHandle
        switch resolve(args.file) {
        case .success(let resolved):
            (call, object) = resolved
        case .failure(let rejection):
            return self.answer(rejection, Read3Res.fail(.stale, Read3ResFail(fileAttributes: .absent)))
        }
        call.procedureName = self.procedure.name
        if self.sendsFileRanges, args.count >= self.service.limits.minFileRangeReadBytes {
            do throws(UnionError) {
                let count = min(Int(args.count), self.service.limits.maxReadBytes)
                if let range = try call.namespace.readRange(
                    object, offset: args.offset, count: count, as: call.credentials)
                {
                    return .successFromFile(self.service.readReply(range))
                }
            } catch {
                return .success(
                    Self.encoded(
                        Read3Res.fail(call.status(error), Read3ResFail(fileAttributes: call.postOp(object)))))
            }
        }
        let reply = self.service.readReply(args) { buffer in
            Result { () throws(UnionError) -> ReadResult in
                try call.namespace.read(object, offset: args.offset, into: buffer, as: call.credentials)
            }
        }
        switch reply {
        case .success(let reply)?: return .success(reply)
        case .failure(let error)?:
            return .success(
                Self.encoded(
                    Read3Res.fail(call.status(error), Read3ResFail(fileAttributes: call.postOp(object)))))
        case nil: preconditionFailure("the blocking read always answers")
        }
    }

    /// The encoded result, in a buffer sized for the common small replies (one allocation).
    static func encoded<Value: XDREncodable>(_ value: Value) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        value.encode(xdr: &buffer)
        return buffer
    }
}
