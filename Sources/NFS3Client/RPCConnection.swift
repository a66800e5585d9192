import NIOCore
import NIOPosix
import SunRPC
import XDR

// An asynchronous ONC RPC (RFC 5531) client transport over TCP: many calls in flight on one
// connection, replies matched to calls by xid, record marking (§11) both ways.

/// Where a connection's socket is bound before it connects.
public enum RPCSourcePortChoice: Sendable, Equatable {
    /// Any port the system picks.
    case any
    /// A free port below 1024, as a root kernel client uses (servers without `insecure`
    /// refuse others). Needs privilege.
    case privileged
}

/// One RPC call on its way to the handler: the header (record mark and xid still to be
/// filled in), an optional bulk payload sent after it without a copy (WRITE data), and the
/// promise of the reply body.
struct RPCOutboundCall {
    var message: ByteBuffer
    var payload: ByteBuffer?
    var promise: EventLoopPromise<ByteBuffer>
}

/// Offsets of the two words the handler fills in when the call is sent.
enum RPCCallLayout {
    static let recordMarkOffset = 0
    static let xidOffset = 4
    static let lastFragmentBit: UInt32 = 0x8000_0000
}

/// The channel handler that owns the calls in flight on one connection. Everything in it
/// runs on the channel's event loop.
///
/// Flushing: a call written while replies are being read (typically from a reply's callback,
/// which queues the next call) is flushed once at the end of the read burst, so a connection
/// at queue depth N makes about one `writev` per burst rather than one per call.
final class RPCClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RPCOutboundCall
    typealias OutboundOut = ByteBuffer

    struct Pending {
        var promise: EventLoopPromise<ByteBuffer>
        /// The watchdog tick when the call was sent.
        var bornTick: UInt32
    }

    private var pending: [UInt32: Pending] = [:]
    private var nextXID: UInt32
    private var inReadBurst = false
    private var needsFlush = false
    private var failure: NFS3ClientError?
    private let timeout: TimeAmount?
    private var watchdog: RepeatedTask?
    /// Watchdog ticks so far. A call expires on the 5th tick after the one it was sent in:
    /// between 1 and 1.25 times the timeout, without reading a clock per call.
    private var tick: UInt32 = 0
    private static let padding: ByteBuffer = ByteBuffer(bytes: [0, 0, 0])
    private var reassembler: ReplyReassembler

    init(firstXID: UInt32, timeout: TimeAmount?, maxReplyBytes: Int = 8 << 20) {
        self.reassembler = ReplyReassembler(maxRecordBytes: maxReplyBytes)
        self.nextXID = firstXID
        self.timeout = timeout
        self.pending.reserveCapacity(64)
    }

    /// Calls in flight (for tests).
    var outstanding: Int { self.pending.count }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let timeout = self.timeout else { return }
        // One timer per connection, not one per call: every quarter of the timeout, calls
        // older than the timeout fail with `.timedOut`. Ticks of the event loop's own clock,
        // so the expiry follows the loop's time.
        let interval = TimeAmount.nanoseconds(max(10_000_000, timeout.nanoseconds / 4))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.watchdog = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let (handler, context) = loopBound.value
            handler.expire(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.watchdog?.cancel()
        self.watchdog = nil
        self.failAll(self.failure ?? .connectionClosed)
    }

    private func expire(context: ChannelHandlerContext) {
        self.tick &+= 1
        var expired: [UInt32] = []
        for (xid, call) in self.pending where self.tick &- call.bornTick > 4 {
            expired.append(xid)
        }
        for xid in expired {
            self.pending.removeValue(forKey: xid)?.promise.fail(NFS3ClientError.timedOut)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var call = self.unwrapOutboundIn(data)
        if let failure = self.failure {
            call.promise.fail(failure)
            promise?.fail(failure)
            return
        }
        var xid = self.nextXID
        while self.pending[xid] != nil { xid &+= 1 }
        self.nextXID = xid &+ 1
        let payloadBytes = call.payload?.readableBytes ?? 0
        let pad = xdrPadding(payloadBytes)
        let recordLength = call.message.readableBytes - 4 + payloadBytes + pad
        let base = call.message.readerIndex
        call.message.setInteger(
            RPCCallLayout.lastFragmentBit | UInt32(truncatingIfNeeded: recordLength),
            at: base + RPCCallLayout.recordMarkOffset, endianness: .big)
        call.message.setInteger(xid, at: base + RPCCallLayout.xidOffset, endianness: .big)
        self.pending[xid] = Pending(promise: call.promise, bornTick: self.tick)
        context.write(self.wrapOutboundOut(call.message), promise: nil)
        if let payload = call.payload {
            context.write(self.wrapOutboundOut(payload), promise: nil)
            if pad > 0 {
                context.write(self.wrapOutboundOut(Self.padding.getSlice(at: 0, length: pad)!), promise: nil)
            }
        }
        promise?.succeed(())
        if self.inReadBurst {
            self.needsFlush = true
        } else {
            context.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.inReadBurst = true
        var bytes = self.unwrapInboundIn(data)
        do {
            try self.reassembler.feed(&bytes) { record in self.received(record: record, context: context) }
        } catch {
            switch error {
            case .recordTooLarge(let announced, let limit):
                self.fail(
                    context: context,
                    NFS3ClientError.malformedReply("a reply of \(announced) bytes exceeds the limit of \(limit)"))
            }
        }
    }

    private func received(record: ByteBuffer, context: ChannelHandlerContext) {
        guard self.failure == nil else { return }
        var record = record
        let reply: RPCReplyHeader
        do {
            reply = try RPCReplyHeader.read(from: &record)
        } catch {
            self.fail(context: context, NFS3ClientError.malformedReply("\(error)"))
            return
        }
        // A reply to a call that already timed out (or was never made) is dropped.
        guard let call = self.pending.removeValue(forKey: reply.xid) else { return }
        if reply.status == .success {
            call.promise.succeed(record)
        } else {
            call.promise.fail(NFS3ClientError.rpc(reply.status))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.inReadBurst = false
        if self.needsFlush {
            self.needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if self.failure == nil { self.failure = .connectionClosed }
        self.failAll(self.failure!)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.fail(context: context, error)
    }

    private func fail(context: ChannelHandlerContext, _ error: Error) {
        let clientError: NFS3ClientError
        switch error {
        case let known as NFS3ClientError: clientError = known
        default: clientError = .transport("\(error)")
        }
        if self.failure == nil { self.failure = clientError }
        self.failAll(self.failure!)
        context.close(promise: nil)
    }

    private func failAll(_ error: NFS3ClientError) {
        guard !self.pending.isEmpty else { return }
        let calls = self.pending
        self.pending.removeAll()
        for (_, call) in calls { call.promise.fail(error) }
    }
}

/// The part of a reply message (RFC 5531 §9 `rpc_msg` with `reply_body`) before the results.
/// One TCP connection to an ONC RPC server with calls in flight, matched by xid.
///
/// Thread-safe: `call` may be used from any thread; it is cheapest from the connection's own
/// event loop (no hop), e.g. from the callback of a previous reply.
public final class RPCConnection: Sendable {
    public let channel: Channel
    public var eventLoop: EventLoop { self.channel.eventLoop }
    /// The credential every call carries unless the call names another.
    public let credential: RPCCredential
    /// The credential, encoded once (`opaque_auth` + an AUTH_NONE verifier).
    private let encodedAuth: ByteBuffer
    /// The local address the socket is bound to.
    public let localAddress: SocketAddress?
    public let remoteAddress: SocketAddress?

    init(channel: Channel, credential: RPCCredential) {
        self.channel = channel
        self.credential = credential
        self.encodedAuth = Self.encodeAuth(credential)
        self.localAddress = channel.localAddress
        self.remoteAddress = channel.remoteAddress
    }

    static func encodeAuth(_ credential: RPCCredential) -> ByteBuffer {
        var buffer = ByteBuffer()
        credential.encode(xdr: &buffer)
        buffer.writeXDR(AuthFlavor.none)
        buffer.writeXDR(UInt32(0))
        return buffer
    }

    /// Connects to `host`:`port` over TCP, the socket bound first to `sourceAddress` (e.g.
    /// "127.0.0.7", so the server sees another client) and a port chosen by `sourcePort`.
    /// `timeout` bounds the connect and then every call (nil: calls wait until the connection
    /// closes).
    public static func connect(
        host: String,
        port: Int,
        sourceAddress: String? = nil,
        sourcePort: RPCSourcePortChoice = .any,
        credential: RPCCredential,
        timeout: TimeAmount? = .seconds(30),
        group: EventLoopGroup
    ) -> EventLoopFuture<RPCConnection> {
        let eventLoop = group.next()
        let remote: SocketAddress
        do {
            remote = try SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch {
            return eventLoop.makeFailedFuture(NFS3ClientError.connectFailed("cannot resolve \(host):\(port): \(error)"))
        }
        let candidates: [Int]
        switch sourcePort {
        case .any: candidates = [0]
        // The kernel client picks from 665...1023 downwards; collisions with a port in use
        // (TIME_WAIT of an earlier run) move on to the next.
        case .privileged: candidates = Array((600...1023).reversed()).shuffled()
        }
        return Self.connect(
            remote: remote, sourceAddress: sourceAddress, ports: candidates[...], credential: credential,
            timeout: timeout, eventLoop: eventLoop)
    }

    private static func connect(
        remote: SocketAddress, sourceAddress: String?, ports: ArraySlice<Int>, credential: RPCCredential,
        timeout: TimeAmount?, eventLoop: EventLoop
    ) -> EventLoopFuture<RPCConnection> {
        guard let port = ports.first else {
            return eventLoop.makeFailedFuture(NFS3ClientError.connectFailed("no free privileged source port"))
        }
        let firstXID = UInt32.random(in: 1...UInt32.max / 2)
        var bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            // Up to 2 MiB per read when replies are large (1 MiB READs): fewer read calls and
            // fewer pieces for the record decoder to gather; small replies keep small buffers.
            .channelOption(
                .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 65536, maximum: 2 << 20)
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        RPCClientHandler(firstXID: firstXID, timeout: timeout))
                }
            }
        if let timeout { bootstrap = bootstrap.connectTimeout(timeout) }
        if sourceAddress != nil || port != 0 {
            do {
                let local =
                    try sourceAddress.map { try SocketAddress(ipAddress: $0, port: port) }
                    ?? (remote.protocol == .inet6
                        ? try SocketAddress(ipAddress: "::", port: port)
                        : try SocketAddress(ipAddress: "0.0.0.0", port: port))
                bootstrap = bootstrap.bind(to: local)
            } catch {
                return eventLoop.makeFailedFuture(
                    NFS3ClientError.connectFailed("source address \(sourceAddress ?? "*"): \(error)"))
            }
        }
        return bootstrap.connect(to: remote).map { channel in
            RPCConnection(channel: channel, credential: credential)
        }.flatMapError { error in
            if port != 0, ports.count > 1, "\(error)".contains("in use") || "\(error)".contains("EADDRINUSE") {
                return Self.connect(
                    remote: remote, sourceAddress: sourceAddress, ports: ports.dropFirst(), credential: credential,
                    timeout: timeout, eventLoop: eventLoop)
            }
            return eventLoop.makeFailedFuture(
                NFS3ClientError.connectFailed("\(remote) from \(sourceAddress ?? "any address"): \(error)"))
        }
    }

    /// Sends one call and returns the reply's results (the bytes after `accept_stat`
    /// SUCCESS). An RPC-level refusal fails the future with `NFS3ClientError.rpc`; a closed
    /// connection with `.connectionClosed`; no reply within the timeout with `.timedOut`.
    ///
    /// `payload` is sent after the encoded arguments without being copied and padded to four
    /// bytes: the data of an opaque whose length word `arguments` wrote last.
    public func call(
        program: UInt32, version: UInt32, procedure: UInt32,
        credential: RPCCredential? = nil,
        payload: ByteBuffer? = nil,
        arguments: (inout ByteBuffer) -> Void
    ) -> EventLoopFuture<ByteBuffer> {
        var message = self.channel.allocator.buffer(capacity: 160)
        message.writeInteger(UInt32(0))  // record mark, filled in by the handler
        message.writeInteger(UInt32(0))  // xid, filled in by the handler
        message.writeXDR(UInt32(0))  // CALL
        message.writeXDR(RPCConstants.rpcVersion)
        message.writeXDR(program)
        message.writeXDR(version)
        message.writeXDR(procedure)
        if let credential {
            var auth = Self.encodeAuth(credential)
            message.writeBuffer(&auth)
        } else {
            message.writeImmutableBuffer(self.encodedAuth)
        }
        arguments(&message)
        let promise = self.channel.eventLoop.makePromise(of: ByteBuffer.self)
        self.channel.write(RPCOutboundCall(message: message, payload: payload, promise: promise), promise: nil)
        return promise.futureResult
    }

    /// Sends one call whose arguments are already encoded; awaits the results (as the
    /// closure form, for callers that hold encoded arguments, e.g. a replayed trace).
    public func call(
        program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer
    ) async throws -> ByteBuffer {
        try await self.call(program: program, version: version, procedure: procedure) { buffer in
            buffer.writeImmutableBuffer(arguments)
        }.get()
    }

    /// An executor on this connection's event loop, for tasks that mostly wait for its calls
    /// (`EventLoopTaskExecutor`).
    public var taskExecutor: EventLoopTaskExecutor { EventLoopTaskExecutor(self.channel.eventLoop) }

    /// Closes the connection; calls still in flight fail with `.connectionClosed`.
    public func close() -> EventLoopFuture<Void> {
        let promise = self.channel.eventLoop.makePromise(of: Void.self)
        self.channel.close(promise: promise)
        return promise.futureResult.recover { _ in }
    }

    /// Completes when the connection has closed (by either side).
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }
}
