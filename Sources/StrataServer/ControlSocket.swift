import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOPosix

/// A request on the local control socket (`<state_dir>/control.sock`, mode 0600): one JSON
/// object a line, answered by one JSON line. `strata clients` and `strata client reset` use it
/// so they act on the running server's state, not behind its back.
public struct ControlRequest: Codable, Sendable {
    public var command: String  // "clients" | "reset"
    public var key: String?
    public var export: String?

    public init(command: String, key: String? = nil, export: String? = nil) {
        self.command = command
        self.key = key
        self.export = export
    }
}

public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var clients: [ClientReport]?
    public var reset: [String]?

    public init(ok: Bool, error: String? = nil, clients: [ClientReport]? = nil, reset: [String]? = nil) {
        self.ok = ok
        self.error = error
        self.clients = clients
        self.reset = reset
    }
}

public func controlSocketPath(_ configuration: Configuration) -> String {
    configuration.server.controlSocket ?? "\(configuration.server.stateDirectory)/control.sock"
}

final class ControlSocket: Sendable {
    let channel: Channel
    let path: String

    private init(channel: Channel, path: String) {
        self.channel = channel
        self.path = path
    }

    static func start(path: String, registry: ExportRegistry, threadPool: NIOThreadPool, group: EventLoopGroup, logger: Logger) async throws -> ControlSocket {
        // A socket file left by a crashed server would make bind fail; nothing else lives there.
        unlink(path)
        let bootstrap = ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.pipeline.addHandler(ByteToMessageHandler(LineDecoder())).flatMap {
                    channel.pipeline.addHandler(ControlHandler(registry: registry, threadPool: threadPool, logger: logger))
                }
            }
        let previous = umask(0o077)
        defer { umask(previous) }
        do {
            let channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
            return ControlSocket(channel: channel, path: path)
        } catch {
            throw StartupError(message: "cannot create the control socket \(path): \(error); set server.control_socket or fix server.state_dir")
        }
    }

    func shutdown() async throws {
        try await self.channel.close()
        unlink(self.path)
    }
}

struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 64 << 10 { throw AdministrationError("control request longer than 64 KiB") }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        guard let line = buffer.readSlice(length: length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }
}

final class ControlHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let registry: ExportRegistry
    let threadPool: NIOThreadPool
    let logger: Logger

    init(registry: ExportRegistry, threadPool: NIOThreadPool, logger: Logger) {
        self.registry = registry
        self.threadPool = threadPool
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = self.unwrapInboundIn(data)
        let registry = self.registry
        // Resets touch the file system: never on the event loop.
        let answer = self.threadPool.runIfActive(eventLoop: context.eventLoop) { () -> ByteBuffer in
            let response: ControlResponse
            do {
                let request = try JSONDecoder().decode(ControlRequest.self, from: line)
                switch request.command {
                case "clients":
                    response = ControlResponse(ok: true, clients: registry.clients())
                case "reset":
                    guard let key = request.key else { throw AdministrationError("reset needs a client key") }
                    response = ControlResponse(ok: true, reset: try registry.resetClient(key: key, exportPath: request.export))
                default:
                    throw AdministrationError("unknown command \(request.command); known: clients, reset")
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
