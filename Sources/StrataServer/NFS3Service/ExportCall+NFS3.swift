import Logging
import NFS3
import Union

/// What the NFS handlers add to a call in its export: handles and attributes for replies, and
/// the one mapping of errors and rejections to NFS status codes.
extension ExportCall {
    /// The wire file handle of `object`.
    func fileHandle3(_ object: ObjectHandle) -> FileHandle3 {
        FileHandle3(self.fileHandle(object))
    }

    // MARK: Attributes for replies

    /// post_op_attr of `object`; none if it cannot be read (removed meanwhile, I/O error). Only
    /// for answers the union call did not complete (its own error paths): a successful call
    /// returns the attributes it saw.
    func postOp(_ object: ObjectHandle) -> PostOpAttr {
        PostOpAttr((try? self.namespace.getattr(object)).map(FileAttributes3.init))
    }

    /// pre_op_attr of `object`, read before a change.
    func preOp(_ object: ObjectHandle) -> PreOpAttr {
        PreOpAttr((try? self.namespace.getattr(object)).map { FileAttributes3($0).wccAttributes })
    }

    /// wcc_data of a change as the union took it, in the change's own lock section (no second call).
    func wcc(_ change: BeforeAfter?) -> WccData {
        WccData(
            before: PreOpAttr(change?.before.map { FileAttributes3($0).wccAttributes }),
            after: PostOpAttr(change?.after.map(FileAttributes3.init)))
    }

    /// wcc_data: `before` (read before the change) and the attributes now.
    func wcc(_ before: PreOpAttr, _ object: ObjectHandle) -> WccData {
        WccData(before: before, after: self.postOp(object))
    }

    // MARK: Errors

    /// The status for a union error, logged with the call's context and the name involved.
    func status(_ error: UnionError, name: [UInt8]? = nil) -> NFSStatus3 {
        let status = NFSStatus3(error)
        switch error {
        case .io, .sidecar:
            self.logger.error("NFS operation failed", metadata: Self.metadata(status, error, name))
        case .invalid, .notSupported:
            self.logger.info("NFS operation refused", metadata: Self.metadata(status, error, name))
        case .wouldWait:
            break  // not an answer: the call runs again on the pool, which logs what it answers
        default:
            // Most refusals (NOENT, ACCES, ...) are ordinary answers: build the metadata only
            // when debug logging is on.
            if self.logLevel <= .debug {
                self.logger.debug("NFS operation refused", metadata: Self.metadata(status, error, name))
            }
        }
        return status
    }

    private static func metadata(_ status: NFSStatus3, _ error: UnionError, _ name: [UInt8]?) -> Logger.Metadata {
        // Names come from the wire, and the error may quote them: escaped (see `loggable`).
        var metadata: Logger.Metadata = ["status": "\(status)", "error": "\(loggable("\(error)"))"]
        if let name { metadata["name"] = "\(loggable(name))" }
        return metadata
    }
}

extension NFSStatus3 {
    /// The one mapping of union errors to NFS status codes (one error boundary per module, Docs/ARCHITECTURE.md).
    ///
    /// `badName` reaches here only as a fallback: the handlers classify names before calling
    /// the union (see `NFSName`) so "." and ".." get the status knfsd gives them per procedure.
    /// An empty name or one containing "/" or NUL is NFS3ERR_INVAL: it is well-formed XDR (so
    /// not GARBAGE_ARGS, which knfsd answers) but no valid name (RFC 1813 §2.6: "invalid
    /// argument").
    init(_ error: UnionError) {
        switch error {
        case .noEntry: self = .noent
        case .exists: self = .exist
        case .notDirectory: self = .notdir
        case .isDirectory: self = .isdir
        case .invalid: self = .inval
        case .notEmpty: self = .notempty
        case .nameTooLong: self = .nametoolong
        case .badName: self = .inval
        case .accessDenied: self = .acces
        case .notPermitted: self = .perm
        case .readOnly: self = .rofs
        case .stale: self = .stale
        case .noSpace: self = .nospc
        case .quotaExceeded: self = .dquot
        case .fileTooLarge: self = .fbig
        case .crossDevice: self = .xdev
        case .guardMismatch: self = .notSync
        case .notSupported: self = .notsupp
        case .io, .sidecar, .simulatedCrash: self = .io
        // Only inside `NoWaiting.attempt`, whose answer is thrown away (the call runs again on the pool).
        case .wouldWait: self = .jukebox
        }
    }
}

/// How the NFS service answers a file handle the server core refused: the one mapping of
/// `CallRejection` for NFS.
enum RejectionAnswer: Equatable {
    /// An NFS status with the procedure's failure body (no attributes).
    case status(NFSStatus3)
    /// RPC AUTH_ERROR with AUTH_TOOWEAK.
    case authTooWeak
    /// RPC AUTH_ERROR with AUTH_REJECTEDCRED.
    case authRejectedCredential

    /// The answer to `rejection` of the call's primary handle, logged on `logger`.
    init(_ rejection: CallRejection, logger: Logger) {
        switch rejection {
        case .badHandle:
            logger.debug("bad file handle")
            self = .status(.badhandle)
        case .stale, .noSuchExport, .notDirectory:
            logger.debug("stale file handle", metadata: ["reason": "\(rejection)"])
            self = .status(.stale)
        case .accessDenied, .clientLimitReached:
            Self.logRefusal(rejection, logger)
            self = .status(.acces)
        case .tooWeak:
            Self.logRefusal(rejection, logger)
            self = .authTooWeak
        case .unsupportedCredential:
            Self.logRefusal(rejection, logger)
            self = .authRejectedCredential
        case .layerUnavailable(let reason):
            logger.error("layer unavailable", metadata: ["reason": "\(reason)"])
            self = .status(.io)
        }
    }

    /// Any host can cause these refusals: logged at a bounded rate (see `LogRateLimiter`).
    private static func logRefusal(_ rejection: CallRejection, _ logger: Logger) {
        guard let suppressed = LogRateLimiter.refusals.admit("nfs_handle_refused") else { return }
        if suppressed > 0 {
            logger.info(
                "\(suppressed) more file handle refusals suppressed",
                metadata: ["counter": "strata_log_lines_suppressed_total"])
        }
        logger.info("file handle refused for this client", metadata: ["reason": "\(rejection)"])
    }

    /// The status for a refused second handle (RENAME's target directory, LINK's directory):
    /// the caller was admitted for the first handle, so refusing only the second one means it
    /// belongs elsewhere (another export's rule): ACCES, or the status the rejection maps to.
    static func secondHandle(_ rejection: CallRejection, logger: Logger) -> NFSStatus3 {
        switch RejectionAnswer(rejection, logger: logger) {
        case .status(let status): return status
        case .authTooWeak, .authRejectedCredential: return .acces
        }
    }
}
