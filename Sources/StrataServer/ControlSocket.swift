import Foundation
import Logging
import NIOCore
import NIOExtras
import NIOFoundationCompat
import NIOPosix

/// A request on the local control socket (`<state_dir>/control.sock`, mode 0600): one JSON
/// object a line, answered by one JSON line. `strata clients`, `client reset`, `reload` and
/// `exports` use it so they act on the running server's state, not behind its back.
public struct ControlRequest: Codable, Sendable {
    /// "clients" | "reset" | "reload" | "exports" | "image-publish" | "image-list" |
    /// "image-rollback" | "image-gc" | "image-conflicts"
    public var command: String
    public var key: String?
    public var export: String?
    /// image-publish: the new version's layers, top-most first.
    public var lowers: [String]?
    /// image-rollback: the version to make the newest; image-gc: the one version to remove.
    public var version: Int?

    public init(
        command: String, key: String? = nil, export: String? = nil, lowers: [String]? = nil, version: Int? = nil
    ) {
        self.command = command
        self.key = key
        self.export = export
        self.lowers = lowers
        self.version = version
    }
}

public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var clients: [ClientReport]?
    public var reset: [String]?
    public var reload: ReloadReport?
    public var exports: [ExportReport]?
    public var images: [ImageReport]?
    /// image-publish: the version made; image-rollback: the version next mounts get.
    public var version: Int?
    public var conflicts: ConflictReport?
    public var collected: [CollectionReport]?
    /// The server's process id, in every answer.
    public var pid: Int32?

    public init(
        ok: Bool, error: String? = nil, clients: [ClientReport]? = nil, reset: [String]? = nil,
        reload: ReloadReport? = nil,
        exports: [ExportReport]? = nil, images: [ImageReport]? = nil, version: Int? = nil,
        conflicts: ConflictReport? = nil,
        collected: [CollectionReport]? = nil
    ) {
        self.images = images
        self.version = version
        self.conflicts = conflicts
        self.collected = collected
        self.ok = ok
        self.error = error
        self.clients = clients
        self.reset = reset
        self.reload = reload
        self.exports = exports
        self.pid = getpid()
    }
}

/// One running export, as `strata exports` shows it (like `exportfs -v`).
public struct ExportReport: Codable, Sendable, Equatable {
    public var path: String
    /// The identifier file handles carry (`id`, or the one assigned and recorded).
    public var id: UInt32
    public var lowers: [String]
    public var upper: String?
    public var clientKey: String
    /// Each rule as written and with every option spelled out: `10.0.0.0/24(rw)` and
    /// `10.0.0.0/24(rw,root_squash,secure,anonuid=65534,anongid=65534)`.
    public var rules: [String]
    public var effectiveRules: [String]
    /// The image version next mounts get (its lowers are `lowers`); nil without image versions.
    public var imageVersion: Int?

    init(_ export: ExportConfiguration) {
        self.path = export.path
        self.id = export.exportID
        self.lowers = export.lowers
        self.upper = export.upper
        self.clientKey = export.clientKey.rawValue
        self.rules = export.clients.map(\.text)
        self.effectiveRules = export.clients.map(\.description)
    }
}

/// Sends `request` to the server listening on the control socket at `path` and returns its
/// answer, waiting at most `timeout` seconds for it.
public func askControlSocket(path: String, request: ControlRequest, timeout: Int = 60) throws -> ControlResponse {
    let descriptor = try connectControlSocket(path: path)
    defer { close(descriptor) }
    var limit = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    var line = try JSONEncoder().encode(request)
    line.append(UInt8(ascii: "\n"))
    _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    var received = Data()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while !received.contains(UInt8(ascii: "\n")) {
        let count = read(descriptor, &chunk, chunk.count)
        if count <= 0 { break }
        received.append(contentsOf: chunk[0..<count])
    }
    guard !received.isEmpty else {
        throw AdministrationError("the server on \(path) closed the connection without answering; see its log")
    }
    return try JSONDecoder().decode(ControlResponse.self, from: received)
}

/// A connected descriptor to the control socket at `path`.
func connectControlSocket(path: String) throws -> Int32 {
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else {
        throw AdministrationError("socket(AF_UNIX) failed: \(String(cString: strerror(errno)))")
    }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let pathBytes = Array(path.utf8)
    guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        close(descriptor)
        throw AdministrationError(
            "control socket path \(path) is too long; set server.control_socket to a shorter path")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in pathBytes.enumerated() { raw[index] = byte }
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    guard connected == 0 else {
        let reason = String(cString: strerror(errno))
        close(descriptor)
        throw AdministrationError(
            "no strata server answers on \(path) (\(reason)); start it with `strata serve --config FILE`, or check server.state_dir / server.control_socket"
        )
    }
    return descriptor
}

public func controlSocketPath(_ configuration: Configuration) -> String {
    configuration.server.controlSocket ?? "\(configuration.server.stateDirectory)/control.sock"
}

final class ControlSocket: Sendable {
    let channel: Channel
    let path: String
    /// The longest request line a connection may send; beyond it the connection is closed.
    static let maximumRequestBytes = 64 << 10

    private init(channel: Channel, path: String) {
        self.channel = channel
        self.path = path
    }

    static func start(
        path: String, registry: ExportRegistry, reloader: Reloader, threadPool: NIOThreadPool, group: EventLoopGroup,
        logger: Logger
    ) async throws -> ControlSocket {
        try ControlSocket.refuseIfAnswering(path: path)
        // A socket file left by a crashed server would make bind fail; nothing else lives there.
        unlink(path)
        let bootstrap = ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                // One request a line, refused beyond 64 KiB so a local client cannot make the server buffer without
                // limit (the handler's bound: the decoder has none).
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(LineBasedFrameDecoder(), maximumBufferSize: Self.maximumRequestBytes),
                        ControlHandler(registry: registry, reloader: reloader, threadPool: threadPool, logger: logger))
                }
            }
        let previous = umask(0o077)
        defer { umask(previous) }
        do {
            let channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
            return ControlSocket(channel: channel, path: path)
        } catch {
            throw StartupError(
                message:
                    "cannot create the control socket \(path): \(error); set server.control_socket or fix server.state_dir"
            )
        }
    }

    /// A socket file a live server answers on is that server's (control_socket set to one
    /// path for two state directories): never take it away from it.
    static func refuseIfAnswering(path: String) throws {
        guard let descriptor = try? connectControlSocket(path: path) else { return }
        close(descriptor)
        throw StartupError(
            message:
                "another strata server answers on the control socket \(path); give this server its own server.control_socket (or leave it unset: <state_dir>/control.sock)"
        )
    }

    func shutdown() async throws {
        try await self.channel.close()
        unlink(self.path)
    }
}

final class ControlHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let registry: ExportRegistry
    let reloader: Reloader
    let threadPool: NIOThreadPool
    let logger: Logger

    init(registry: ExportRegistry, reloader: Reloader, threadPool: NIOThreadPool, logger: Logger) {
        self.registry = registry
        self.reloader = reloader
        self.threadPool = threadPool
        self.logger = logger
    }

    /// A request line too long (the decoder's error) or a broken connection: it is closed,
    /// so the server holds nothing for a client that sent garbage.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.warning("control socket: closing a connection", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = self.unwrapInboundIn(data)
        let registry = self.registry
        let reloader = self.reloader
        // Resets and reloads touch the file system: never on the event loop.
        let answer = self.threadPool.runIfActive(eventLoop: context.eventLoop) { () -> ByteBuffer in
            let response: ControlResponse
            do {
                let request = try JSONDecoder().decode(ControlRequest.self, from: line)
                switch request.command {
                case "clients":
                    response = ControlResponse(ok: true, clients: registry.clients())
                case "reset":
                    guard let key = request.key else { throw AdministrationError("reset needs a client key") }
                    response = ControlResponse(
                        ok: true, reset: try registry.resetClient(key: key, exportPath: request.export))
                case "reload":
                    let report = reloader.reloadFromSource()
                    response = ControlResponse(
                        ok: report.applied, error: report.applied ? nil : "configuration not reloaded", reload: report)
                case "exports":
                    response = ControlResponse(ok: true, exports: registry.exportReports())
                case "image-publish":
                    guard let export = request.export, let lowers = request.lowers else {
                        throw AdministrationError("image-publish needs an export and lowers")
                    }
                    response = ControlResponse(
                        ok: true, version: try registry.publish(exportPath: export, lowers: lowers).number)
                case "image-list":
                    response = ControlResponse(
                        ok: true,
                        images: registry.imageReports().filter { request.export == nil || $0.export == request.export })
                case "image-rollback":
                    guard let export = request.export else {
                        throw AdministrationError("image-rollback needs an export")
                    }
                    response = ControlResponse(
                        ok: true, version: try registry.rollback(exportPath: export, to: request.version))
                case "image-gc":
                    response = ControlResponse(
                        ok: true,
                        collected: try registry.collectGarbage(exportPath: request.export, version: request.version))
                case "image-conflicts":
                    guard let export = request.export, let key = request.key else {
                        throw AdministrationError("image-conflicts needs an export and a client key")
                    }
                    response = ControlResponse(
                        ok: true, conflicts: try registry.conflicts(exportPath: export, clientKey: key))
                default:
                    throw AdministrationError(
                        "unknown command \(request.command); known: clients, reset, reload, exports, image-publish, image-list, image-rollback, image-gc, image-conflicts"
                    )
                }
            } catch {
                response = ControlResponse(ok: false, error: "\(error)")
            }
            var buffer = ByteBuffer(data: (try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false}".utf8))
            buffer.writeString("\n")
            return buffer
        }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        answer.whenComplete { result in
            let context = bound.value
            if case .success(let buffer) = result {
                context.writeAndFlush(NIOAny(buffer), promise: nil)
            } else {
                context.close(promise: nil)
            }
        }
    }
}
