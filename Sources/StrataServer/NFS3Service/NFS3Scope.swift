import Logging
import NFS3
import Union

/// One call inside its export: what every procedure handler works with.
struct NFS3Scope {
    let service: NFS3Service
    let export: NFS3Export
    let procedure: NFS3Procedure
    /// Carries xid, client, proc, export and client key.
    let logger: Logger
    let resolveHandle: (FileHandle3) -> Result<(NFS3Export, ObjectHandle), NFS3HandleRejection>

    var namespace: UnionNamespace { self.export.namespace }
    var credentials: Credentials { self.export.credentials }
    var isReadOnly: Bool { self.export.isReadOnly }

    func fileHandle(_ object: ObjectHandle) -> FileHandle3 {
        FileHandle3(self.export.fileHandle(object))
    }

    // MARK: Attributes for replies

    /// post_op_attr of `object`; none if it cannot be read (removed meanwhile, I/O error).
    func postOp(_ object: ObjectHandle) -> PostOpAttr {
        PostOpAttr((try? self.namespace.getattr(object)).map(FileAttributes3.init))
    }

    /// pre_op_attr of `object`, read before a change.
    func preOp(_ object: ObjectHandle) -> PreOpAttr {
        PreOpAttr((try? self.namespace.getattr(object)).map { FileAttributes3($0).wccAttributes })
    }

    /// wcc_data: `before` (read before the change) and the attributes now.
    func wcc(_ before: PreOpAttr, _ object: ObjectHandle) -> WccData {
        WccData(before: before, after: self.postOp(object))
    }

    enum SecondHandle {
        case resolved(ObjectHandle)
        case refused(NFSStatus3)
    }

    // MARK: A second file handle (RENAME's target directory, LINK's directory)

    /// Resolves another file handle of the call; it must be in the same namespace as the
    /// first (NFS3ERR_XDEV otherwise, as knfsd answers across exports).
    func resolveSecond(_ handle: FileHandle3) -> SecondHandle {
        switch self.resolveHandle(handle) {
        case .success(let (export, object)):
            guard export.isSameNamespace(as: self.export) else { return .refused(.xdev) }
            return .resolved(object)
        case .failure(let rejection):
            // The caller was admitted for the first handle; refusing only the second one means
            // it belongs elsewhere (another export's rule): ACCES, or what the rejection says.
            switch rejection {
            case .tooWeak, .unsupportedCredential: return .refused(.acces)
            default: return .refused(NFS3Scope.status(for: rejection, logger: self.logger))
            }
        }
    }

    // MARK: Errors

    /// The status for a union error, logged with the call's context and the name involved.
    func status(_ error: UnionError, name: [UInt8]? = nil) -> NFSStatus3 {
        let status = NFS3Scope.status(for: error)
        // Names come from the wire, and the error may quote them: escaped (see `loggable`).
        var metadata: Logger.Metadata = ["status": "\(status)", "error": "\(loggable("\(error)"))"]
        if let name { metadata["name"] = "\(loggable(name))" }
        switch error {
        case .io, .sidecar:
            self.logger.error("NFS operation failed", metadata: metadata)
        case .invalid, .notSupported:
            self.logger.info("NFS operation refused", metadata: metadata)
        default:
            self.logger.debug("NFS operation refused", metadata: metadata)
        }
        return status
    }

    /// The one mapping of union errors to NFS status codes (one error boundary per module, Docs/ARCHITECTURE.md).
    ///
    /// `badName` reaches here only as a fallback: the handlers classify names before calling
    /// the union (see `NFSName`) so "." and ".." get the status knfsd gives them per procedure.
    /// An empty name or one containing "/" or NUL is NFS3ERR_INVAL: it is well-formed XDR (so
    /// not GARBAGE_ARGS, which knfsd answers) but no valid name (RFC 1813 §2.6: "invalid
    /// argument").
    static func status(for error: UnionError) -> NFSStatus3 {
        switch error {
        case .noEntry: return .noent
        case .exists: return .exist
        case .notDirectory: return .notdir
        case .isDirectory: return .isdir
        case .invalid: return .inval
        case .notEmpty: return .notempty
        case .nameTooLong: return .nametoolong
        case .badName: return .inval
        case .accessDenied: return .acces
        case .notPermitted: return .perm
        case .readOnly: return .rofs
        case .stale: return .stale
        case .badHandle: return .badhandle
        case .noSpace: return .nospc
        case .quotaExceeded: return .dquot
        case .fileTooLarge: return .fbig
        case .crossDevice: return .xdev
        case .guardMismatch: return .notSync
        case .badCookie: return .badCookie
        case .notSupported: return .notsupp
        case .io: return .io
        case .sidecar: return .io
        }
    }

    /// The status for a file handle the server core refused.
    static func status(for rejection: NFS3HandleRejection, logger: Logger) -> NFSStatus3 {
        switch rejection {
        case .badHandle:
            logger.debug("bad file handle")
            return .badhandle
        case .stale:
            logger.debug("stale file handle")
            return .stale
        case .accessDenied, .tooWeak, .unsupportedCredential:
            // Any host can cause these: logged at a bounded rate (see `LogRateLimiter`).
            if let suppressed = LogRateLimiter.refusals.admit("nfs_handle_refused") {
                if suppressed > 0 {
                    logger.info("\(suppressed) more file handle refusals suppressed", metadata: ["counter": "strata_log_lines_suppressed_total"])
                }
                logger.info("file handle refused for this client", metadata: ["reason": "\(rejection)"])
            }
            return .acces
        case .layerUnavailable(let reason):
            logger.error("layer unavailable", metadata: ["reason": "\(reason)"])
            return .io
        }
    }
}
