import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A minimal HTTP/1.1 endpoint serving `GET /metrics` (and `HEAD /metrics`, headers only) in the
/// Prometheus text format (`[server] metrics = "HOST:PORT"`). Everything else answers 404.
final class MetricsEndpoint: Sendable {
    let channel: Channel

    private init(channel: Channel) {
        self.channel = channel
    }

    var port: Int? { self.channel.localAddress?.port }

    static func start(
        address: String, metrics: ServerMetrics, group: EventLoopGroup, logger: Logger
    ) async throws -> MetricsEndpoint {
        // The configuration checked the address; this guards callers that did not.
        guard let parsed = MetricsAddress(address) else {
            throw StartupError(
                message:
                    "server.metrics = \"\(address)\": expected \"HOST:PORT\" with a port from 0 to 65535, e.g. \"127.0.0.1:9102\""
            )
        }
        let (host, port) = (parsed.host, parsed.port)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHTTPHandler(metrics: metrics))
                }
            }
        do {
            let channel = try await bootstrap.bind(host: host, port: port).get()
            logger.info("metrics endpoint listening", metadata: ["address": "\(address)"])
            return MetricsEndpoint(channel: channel)
        } catch {
            throw StartupError(
                message: "cannot serve metrics on \(address): \(error); change server.metrics or remove it")
        }
    }

    func shutdown() async throws {
        try await self.channel.close()
    }
}

final class MetricsHTTPHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let metrics: ServerMetrics

    init(metrics: ServerMetrics) {
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = self.unwrapInboundIn(data) else { return }
        let isHead = request.method == .HEAD
        let isMetrics =
            (request.method == .GET || isHead) && (request.uri == "/metrics" || request.uri.hasPrefix("/metrics?"))
        let body: [UInt8] = isMetrics ? self.metrics.exposition() : Array("not found; try /metrics\n".utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: isMetrics ? "text/plain; version=0.0.4" : "text/plain")
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: request.version, status: isMetrics ? .ok : .notFound, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        // HEAD: the same headers (Content-Length included), no body.
        if !isHead {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }
}
