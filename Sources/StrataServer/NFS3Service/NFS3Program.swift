import Logging
import NFS3
import NIOCore
import SunRPC
import Union

/// What `NFS3Program` needs from the server core: a file handle from the wire resolved for the
/// calling client into its export (namespace, squashed credentials, read-only or not) and the
/// union object it names.
public protocol NFS3HandleResolver: Sendable {
    func resolve(fileHandle: [UInt8], for call: RPCCallContext) -> Result<(ExportCall, ObjectHandle), CallRejection>
    /// `resolve` without any blocking step, for calls answered on the event loop: nil when that
    /// is not possible (the namespace is not open) or the handle is refused (`resolve` answers
    /// refusals).
    func resolveWithoutBlocking(fileHandle: [UInt8], for call: RPCCallContext) -> (ExportCall, ObjectHandle)?
}

extension NFS3HandleResolver {
    public func resolveWithoutBlocking(fileHandle: [UInt8], for call: RPCCallContext) -> (ExportCall, ObjectHandle)? {
        nil
    }
}

/// The NFS program (100003), version 3 (RFC 1813), for `RPCServer`. Called on a thread-pool
/// thread; every call runs to completion there (the union blocks on the file system).
public final class NFS3Program: RPCProgramHandler {
    public let program: UInt32 = NFS3.program
    public let versions: ClosedRange<UInt32> = NFS3.version...NFS3.version
    let service: NFS3Service
    let resolver: any NFS3HandleResolver
    let logger: Logger
    /// Whether read-only calls the caches cannot answer are answered on the event loop all the same.
    let misses: InlineMisses

    /// - Parameters:
    ///   - resolver: the server core's file-handle resolution and access control.
    ///   - writeVerifier: this server start's write verifier (must differ on every start).
    ///   - limits: rtmax/wtmax and friends.
    ///   - logger: for calls without a per-call logger.
    ///   - didTransfer: told the bytes of each successful READ and WRITE.
    public init(
        resolver: any NFS3HandleResolver,
        writeVerifier: UInt64,
        limits: NFS3Limits = NFS3Limits(),
        logger: Logger,
        inlineMisses: InlineMisses = InlineMisses(),
        didTransfer: @escaping @Sendable (_ procedure: NFS3Procedure, _ bytes: Int) -> Void = { _, _ in }
    ) {
        self.service = NFS3Service(writeVerifier: writeVerifier, limits: limits, didTransfer: didTransfer)
        self.resolver = resolver
        self.logger = logger
        self.misses = inlineMisses
    }

    /// CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK, SETATTR and WRITE: a
    /// retransmission must get the first reply from the duplicate request cache.
    public func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool {
        NFS3Procedure(rawValue: procedure)?.isNonIdempotent ?? false
    }

    /// GETATTR, ACCESS, LOOKUP and READ are offered to `handleInline` first: most name an object
    /// (a LOOKUP a name) the union has cached, and most small READs data in the page cache, and
    /// answering those on the event loop saves the two thread hops, which cost more than the call
    /// itself.
    public func mayAnswerInline(version: UInt32, procedure: UInt32) -> Bool {
        guard version == NFS3.version, let procedure = NFS3Procedure(rawValue: procedure) else { return false }
        return InlineMisses.mayAnswer(procedure)
    }

    public func handleInline(_ call: RPCCallContext, arguments: ByteBuffer) -> RPCReply? {
        guard call.version == NFS3.version else { return nil }
        if let outcome = self.service.handleInline(
            procedure: call.procedure, arguments: arguments, sendsFileRanges: call.transport == .tcp,
            resolve: { handle in self.resolver.resolveWithoutBlocking(fileHandle: handle.data, for: call) })
        {
            switch outcome {
            case .success, .successFromFile: return Self.reply(outcome)
            default: return nil
            }
        }
        return self.answerMiss(call, arguments: arguments)
    }

    /// A read-only call the caches could not answer, answered here all the same when no step of it has to wait
    /// (`NFS3Service.handleWithoutWaiting`) and the file system's metadata has not been read from the disk lately
    /// (`InlineMisses`): nil sends it to the pool.
    private func answerMiss(_ call: RPCCallContext, arguments: ByteBuffer) -> RPCReply? {
        let outcome = self.misses.answer { () -> NFS3Outcome? in
            self.service.handleWithoutWaiting(
                procedure: call.procedure, arguments: arguments, logger: call.logger,
                sendsFileRanges: call.transport == .tcp,
                resolve: { handle in self.resolver.resolveWithoutBlocking(fileHandle: handle.data, for: call) })
        }
        return outcome.map(Self.reply)
    }

    public func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        guard call.version == NFS3.version else { return .procedureUnavailable }
        let outcome = self.service.handle(
            procedure: call.procedure, arguments: &arguments, logger: call.logger,
            sendsFileRanges: call.transport == .tcp,
            resolve: { handle in self.resolver.resolve(fileHandle: handle.data, for: call) })
        return Self.reply(outcome)
    }

    static func reply(_ outcome: NFS3Outcome) -> RPCReply {
        switch outcome {
        case .success(let result): return .success(result)
        case .successFromFile(let results): return .successFromFile(results)
        case .garbageArguments: return .garbageArguments
        case .procedureUnavailable: return .procedureUnavailable
        case .authTooWeak: return .authError(.tooWeak)
        case .authRejectedCredential: return .authError(.rejectedCredential)
        }
    }
}
