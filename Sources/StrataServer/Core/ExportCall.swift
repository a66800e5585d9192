import Logging
import SunRPC
import Union

/// One call inside its export, once its file handle passed access control: what every NFS and
/// MOUNT handler works with. The server core (`ExportRegistry.resolve`) builds it once per
/// call, from one decode of the handle and one check of its namespace.
public struct ExportCall: Sendable {
    /// The union namespace of the caller's export (and client, with per-client uppers).
    public let namespace: UnionNamespace
    /// AUTH_SYS identity after root_squash / all_squash (AUTH_NONE: the anonymous user).
    public let credentials: Credentials
    /// `ro` rule or no writable upper: every change answers NFS3ERR_ROFS.
    public let isReadOnly: Bool
    /// The export's path, for logs.
    public let exportPath: String
    /// Bytes 1-3 of this export's file handles.
    public let exportID: UInt32
    /// The caller's client key (its upper layer's name), for logs.
    public let clientKey: String
    /// Bytes 4-7 of the file handles of this caller's namespace (see `ServerFileHandle`).
    public let clientTag: UInt32
    /// The options of the client rule that admitted the caller.
    public let options: ClientOptions
    /// Where the call's logger comes from: the RPC call (its metadata is built only when a
    /// line is logged, as most calls never log), or a logger given as it is (tests).
    enum LogSource: Sendable {
        case call(RPCCallContext, level: Logger.Level)
        case logger(Logger)
    }
    let logSource: LogSource
    /// The procedure's name, for logs.
    var procedureName: String = ""

    /// A call of the RPC call `call`, whose server logger logs from `logLevel` up.
    public init(
        namespace: UnionNamespace, credentials: Credentials, isReadOnly: Bool, exportPath: String, exportID: UInt32,
        clientKey: String, clientTag: UInt32, options: ClientOptions = ClientOptions(), call: RPCCallContext,
        logLevel: Logger.Level
    ) {
        self.init(
            namespace: namespace, credentials: credentials, isReadOnly: isReadOnly, exportPath: exportPath,
            exportID: exportID, clientKey: clientKey, clientTag: clientTag, options: options,
            logSource: .call(call, level: logLevel))
    }

    /// A call logged on `logger` (tests, tools).
    public init(
        namespace: UnionNamespace, credentials: Credentials, isReadOnly: Bool, exportPath: String, exportID: UInt32,
        clientKey: String, clientTag: UInt32, options: ClientOptions = ClientOptions(), logger: Logger
    ) {
        self.init(
            namespace: namespace, credentials: credentials, isReadOnly: isReadOnly, exportPath: exportPath,
            exportID: exportID, clientKey: clientKey, clientTag: clientTag, options: options, logSource: .logger(logger)
        )
    }

    init(
        namespace: UnionNamespace, credentials: Credentials, isReadOnly: Bool, exportPath: String, exportID: UInt32,
        clientKey: String, clientTag: UInt32, options: ClientOptions, logSource: LogSource
    ) {
        self.namespace = namespace
        self.credentials = credentials
        self.isReadOnly = isReadOnly
        self.exportPath = exportPath
        self.exportID = exportID & 0xff_ffff
        self.clientKey = clientKey
        self.clientTag = clientTag
        self.options = options
        self.logSource = logSource
    }

    /// The level below which nothing is logged (without building the call's metadata).
    var logLevel: Logger.Level {
        switch self.logSource {
        case .call(_, let level): return level
        case .logger(let logger): return logger.logLevel
        }
    }

    /// The RPC call's logger (xid, client).
    var callLogger: Logger {
        switch self.logSource {
        case .call(let call, _): return call.logger
        case .logger(let logger): return logger
        }
    }

    /// The call's logger with its export, client key and procedure.
    var logger: Logger {
        var logger = self.callLogger
        logger[metadataKey: "export"] = "\(self.exportPath)"
        logger[metadataKey: "client_key"] = "\(self.clientKey)"
        if !self.procedureName.isEmpty { logger[metadataKey: "proc"] = "\(self.procedureName)" }
        return logger
    }

    /// The wire file handle of `object` in this caller's namespace.
    public func fileHandle(_ object: ObjectHandle) -> [UInt8] {
        ServerFileHandle(exportID: self.exportID, clientTag: self.clientTag, object: object).bytes
    }

    /// Whether `other` is the same namespace (same export, same client): RENAME and LINK
    /// across namespaces answer NFS3ERR_XDEV, as knfsd does across exports.
    func isSameNamespace(as other: ExportCall) -> Bool {
        self.namespace === other.namespace
    }
}

/// Why a call was refused before it reached the union: the one rejection of the server core,
/// for NFS and MOUNT alike (`NFS3Service` maps it to NFS status or RPC errors in one place).
public enum CallRejection: Error, Sendable, Equatable {
    /// Not a handle of ours (NFS3ERR_BADHANDLE).
    case badHandle
    /// The export is gone, the client was reset, or the object was removed (NFS3ERR_STALE).
    case stale
    /// No `clients` rule matches, or the handle belongs to another client (NFS3ERR_ACCES;
    /// MNT3ERR_ACCES for MOUNT).
    case accessDenied
    /// `secure` and the call came from a source port >= 1024 (RPC AUTH_ERROR, AUTH_TOOWEAK).
    case tooWeak
    /// A credential flavor we do not take (RPC AUTH_ERROR, AUTH_REJECTEDCRED).
    case unsupportedCredential
    /// The layer could not be opened or created (NFS3ERR_IO / MNT3ERR_IO).
    case layerUnavailable(String)
    /// No export with that path, or no such directory below it (MNT3ERR_NOENT).
    case noSuchExport
    /// A path below an export that is not a directory (MNT3ERR_NOTDIR).
    case notDirectory
    /// A new client of a per-client export beyond its `max_clients` (MNT3ERR_ACCES); the
    /// message names the export and the key.
    case clientLimitReached(String)
}
