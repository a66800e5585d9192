import Logging
import NFS3
import NIOCore
import SunRPC
import XDR

/// The MOUNT program (100005), versions 1 and 3 (RFC 1094 appendix A, RFC 1813 appendix I),
/// answering from the export registry: MNT admits the client and returns the export's root
/// handle (creating a per-client upper layer on first mount), DUMP and EXPORT feed `showmount`.
public final class MountProgram: RPCProgramHandler {
    public let program: UInt32 = Mount.program
    public let versions: ClosedRange<UInt32> = Mount.version1...Mount.version3
    let registry: ExportRegistry
    let metrics: ServerMetrics
    let logger: Logger
    /// Anyone may send MNT: refusals are logged at a bounded rate, the rest counted.
    let refusalLog: LogRateLimiter

    public init(
        registry: ExportRegistry, metrics: ServerMetrics, logger: Logger, refusalLog: LogRateLimiter = .refusals
    ) {
        self.registry = registry
        self.metrics = metrics
        self.logger = logger
        self.refusalLog = refusalLog
        refusalLog.countSuppressed(in: metrics)
    }

    /// MNT and UMNT change the mount table, but repeating them is harmless: no cache needed.
    public func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool { false }

    public func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        guard call.version == Mount.version1 || call.version == Mount.version3 else {
            return .procedureUnavailable
        }
        guard let procedure = MountProcedure(rawValue: call.procedure) else { return .procedureUnavailable }
        do {
            switch procedure {
            case .null:
                return .success(ByteBuffer())
            case .mnt:
                let path = try DirPath(xdr: &arguments)
                return self.mount(path: path, call: call)
            case .dump:
                let entries = self.registry.mountTable.map {
                    MountBody(hostname: Array($0.host.utf8), directory: DirPath($0.directory))
                }
                return .success(xdrEncoded(MountList(entries)))
            case .umnt:
                let path = try DirPath(xdr: &arguments)
                let host = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
                self.registry.unmount(path: path.description, host: host)
                self.metrics.clientsMounted.set(to: Double(self.registry.mountTable.count))
                call.logger.info("UMNT", metadata: ["export": "\(loggable(path.bytes))", "client": "\(host)"])
                return .success(ByteBuffer())
            case .umntall:
                let host = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
                self.registry.unmountAll(host: host)
                self.metrics.clientsMounted.set(to: Double(self.registry.mountTable.count))
                call.logger.info("UMNTALL", metadata: ["client": "\(host)"])
                return .success(ByteBuffer())
            case .export:
                // showmount -e: each export with its client list, as exportfs shows them.
                let nodes = self.registry.exports.map { export in
                    ExportNode(
                        directory: DirPath(export.path), groups: export.clients.map { Array("\($0.match)".utf8) })
                }
                return .success(xdrEncoded(Exports(nodes)))
            }
        } catch {
            call.logger.debug("MOUNT arguments could not be decoded", metadata: ["error": "\(error)"])
            return .garbageArguments
        }
    }

    func mount(path: DirPath, call: RPCCallContext) -> RPCReply {
        let client = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
        switch self.registry.mount(path: path.description, call: call) {
        case .success(let (admitted, handle)):
            self.metrics.clientsMounted.set(to: Double(self.registry.mountTable.count))
            call.logger.info(
                "MNT",
                metadata: [
                    "export": "\(loggable(path.bytes))", "client": "\(client)",
                    "client_key": "\(loggable(admitted.clientKey))",
                    "access": "\(admitted.isReadOnly ? "ro" : "rw")",
                ])
            if call.version == Mount.version1 {
                // MOUNT v1 carries a fixed 32-byte handle (for NFSv2, which Strata does not serve).
                guard handle.count <= Mount.fileHandle1Bytes else {
                    return .success(xdrEncoded(FHStatus1.fail(errno: 13)))
                }
                return .success(
                    xdrEncoded(
                        FHStatus1.ok(
                            fhandle: handle + [UInt8](repeating: 0, count: Mount.fileHandle1Bytes - handle.count))))
            }
            // AUTH_SYS (1) preferred, AUTH_NONE (0) taken as the anonymous user.
            return .success(xdrEncoded(MountRes3.ok(MountRes3OK(fhandle: FileHandle3(handle), authFlavors: [1, 0]))))
        case .failure(let rejection):
            let status: MountStatus3
            switch rejection {
            case .noSuchExport: status = .noent
            case .notDirectory: status = .notdir
            case .accessDenied, .tooWeak, .unsupportedCredential, .clientLimitReached: status = .acces
            case .badHandle, .stale: status = .inval
            case .layerUnavailable: status = .io
            }
            if let suppressed = self.refusalLog.admit("mnt_refused") {
                if suppressed > 0 {
                    call.logger.notice(
                        "\(suppressed) more MNT refusals suppressed",
                        metadata: ["counter": "strata_log_lines_suppressed_total"])
                }
                // The path and the reason may carry bytes from the wire: escaped.
                var metadata: Logger.Metadata = [
                    "export": "\(loggable(path.bytes))", "client": "\(client)", "reason": "\(loggable("\(rejection)"))",
                    "status": "\(status)",
                ]
                if case .clientLimitReached = rejection { metadata["key"] = "max_clients" }
                let message = self.registry.refusalMessage(rejection, path: path.description, call: call)
                call.logger.notice("MNT refused: \(loggable(message))", metadata: metadata)
            }
            if call.version == Mount.version1 {
                return .success(xdrEncoded(FHStatus1.fail(errno: status.rawValue)))
            }
            return .success(xdrEncoded(MountRes3.fail(status)))
        }
    }
}

extension MeteredProgram {
    init(mount: MountProgram, metrics: ServerMetrics) {
        var names: [UInt32: String] = [:]
        for procedure in MountProcedure.allCases { names[procedure.rawValue] = procedure.name }
        self.init(
            inner: mount, metrics: metrics, name: "mount", procedureNames: names,
            resultsStartWithStatus: { $0 == MountProcedure.mnt.rawValue })
    }
}
