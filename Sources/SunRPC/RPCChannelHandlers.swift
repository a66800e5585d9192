import Logging
import NIOCore

/// One TCP connection: records in, replies out in whatever order they complete.
///
/// At most `maxOutstanding` calls run at once; while that many are outstanding, or while
/// replies pile up unsent (the channel is not writable: a client that does not read), the
/// handler holds back `read()`, so the kernel's receive window pushes back on the client.
final class RPCTCPConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let dispatcher: RPCDispatcher
    private let maxOutstanding: Int
    private let logger: Logger
    private var outstanding = 0
    private var readHeldBack = false
    private var isClosed = false
    /// Shutting down: read no more calls; close once the executing ones have replied.
    private var isDraining = false
    /// The last reply written, so a drained connection closes only after it is flushed.
    private var lastWrite: EventLoopFuture<Void>?
    private var remoteAddress: SocketAddress?
    private var localAddress: SocketAddress?

    init(dispatcher: RPCDispatcher, maxOutstanding: Int, logger: Logger) {
        self.dispatcher = dispatcher
        self.maxOutstanding = max(1, maxOutstanding)
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.remoteAddress = context.channel.remoteAddress
        self.localAddress = context.channel.localAddress
    }

    func channelActive(context: ChannelHandlerContext) {
        self.remoteAddress = context.channel.remoteAddress
        self.localAddress = context.channel.localAddress
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isClosed = true
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.isClosed = true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let record = Self.unwrapInboundIn(data)
        guard !self.isClosed, let remoteAddress = self.remoteAddress ?? context.channel.remoteAddress else {
            return
        }
        switch self.dispatcher.process(
            message: record,
            remoteAddress: remoteAddress,
            localAddress: self.localAddress,
            transport: .tcp,
            eventLoop: context.eventLoop
        ) {
        case .unparseable(let reason):
            self.logger.debug(
                "closing RPC connection: record is not a call",
                metadata: ["client": "\(remoteAddress)", "reason": "\(reason)"]
            )
            self.isClosed = true
            context.close(promise: nil)
        case .none:
            break
        case .reply(let reply):
            self.write(reply, context: context)
        case .pending(let future):
            self.outstanding += 1
            future.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                self.outstanding -= 1
                if case .success(let reply?) = result {
                    self.write(reply, context: context)
                }
                self.resumeReadingIfPossible(context: context)
                self.closeIfDrained(context: context)
            }
        }
    }

    private var mayRead: Bool {
        self.outstanding < self.maxOutstanding && !self.isDraining
    }

    private func closeIfDrained(context: ChannelHandlerContext) {
        guard self.isDraining, self.outstanding == 0, !self.isClosed else { return }
        self.isClosed = true
        let flushed = self.lastWrite ?? context.eventLoop.makeSucceededVoidFuture()
        flushed.assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        if self.readHeldBack, self.mayRead, context.channel.isWritable, !self.isClosed {
            self.readHeldBack = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.mayRead && context.channel.isWritable {
            context.read()
        } else {
            self.readHeldBack = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.resumeReadingIfPossible(context: context)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is RPCDrainEvent {
            self.isDraining = true
            self.closeIfDrained(context: context)
            return
        }
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .all {
            // Idle only counts when nothing is executing: a long call keeps its connection.
            if self.outstanding == 0 {
                self.logger.debug(
                    "closing idle RPC connection",
                    metadata: ["client": "\(self.remoteAddress.map { "\($0)" } ?? "?")"]
                )
                self.isClosed = true
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug(
            "closing RPC connection",
            metadata: ["client": "\(self.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"]
        )
        self.isClosed = true
        context.close(promise: nil)
    }

    private func write(_ reply: RPCReplyMessage, context: ChannelHandlerContext) {
        guard !self.isClosed else { return }
        var head = context.channel.allocator.buffer(capacity: 4 + reply.header.readableBytes)
        head.writeInteger(RecordMarking.header(length: reply.byteCount), endianness: .big)
        var header = reply.header
        head.writeBuffer(&header)
        let written = context.eventLoop.makePromise(of: Void.self)
        if let results = reply.results, results.readableBytes > 0 {
            context.write(Self.wrapOutboundOut(head), promise: nil)
            context.writeAndFlush(Self.wrapOutboundOut(results), promise: written)
        } else {
            context.writeAndFlush(Self.wrapOutboundOut(head), promise: written)
        }
        self.lastWrite = written.futureResult
    }
}

/// A UDP socket: one call per datagram.
final class RPCUDPHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let dispatcher: RPCDispatcher
    private let maxOutstanding: Int
    private let logger: Logger
    private var outstanding = 0
    private var localAddress: SocketAddress?
    private var isDraining = false
    private var isClosing = false
    private var lastSend: EventLoopFuture<Void>?

    init(dispatcher: RPCDispatcher, maxOutstanding: Int, logger: Logger) {
        self.dispatcher = dispatcher
        self.maxOutstanding = max(1, maxOutstanding)
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        self.localAddress = context.channel.localAddress
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is RPCDrainEvent {
            self.isDraining = true
            self.closeIfDrained(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func closeIfDrained(context: ChannelHandlerContext) {
        guard self.isDraining, self.outstanding == 0, !self.isClosing else { return }
        self.isClosing = true
        let flushed = self.lastSend ?? context.eventLoop.makeSucceededVoidFuture()
        flushed.assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        let remoteAddress = envelope.remoteAddress
        // Shutting down: calls that arrive now are left for the next server (the client
        // retransmits), so none starts that could not reply.
        if self.isDraining { return }
        if self.outstanding >= self.maxOutstanding {
            self.logger.debug("dropping RPC datagram: too many calls outstanding", metadata: ["client": "\(remoteAddress)"])
            return
        }
        var localAddress = self.localAddress ?? context.channel.localAddress
        if let destination = envelope.metadata?.packetInfo?.destinationAddress,
            let ip = destination.ipAddress,
            let port = localAddress?.port,
            let address = try? SocketAddress(ipAddress: ip, port: port)
        {
            localAddress = address
        }
        switch self.dispatcher.process(
            message: envelope.data,
            remoteAddress: remoteAddress,
            localAddress: localAddress,
            transport: .udp,
            eventLoop: context.eventLoop
        ) {
        case .unparseable(let reason):
            self.logger.debug(
                "dropping RPC datagram: not a call",
                metadata: ["client": "\(remoteAddress)", "reason": "\(reason)"]
            )
        case .none:
            break
        case .reply(let reply):
            self.send(reply, to: remoteAddress, context: context)
        case .pending(let future):
            self.outstanding += 1
            future.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                self.outstanding -= 1
                if case .success(let reply?) = result {
                    self.send(reply, to: remoteAddress, context: context)
                }
                self.closeIfDrained(context: context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A UDP socket survives errors (e.g. ICMP port unreachable reported on a send).
        self.logger.debug("RPC UDP socket error", metadata: ["error": "\(error)"])
    }

    private func send(_ reply: RPCReplyMessage, to remoteAddress: SocketAddress, context: ChannelHandlerContext) {
        let datagram = reply.joined(allocator: context.channel.allocator)
        let sent = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(
            Self.wrapOutboundOut(AddressedEnvelope(remoteAddress: remoteAddress, data: datagram)),
            promise: sent
        )
        self.lastSend = sent.futureResult
    }
}
