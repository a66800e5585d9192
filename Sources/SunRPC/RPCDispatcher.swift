import Logging
import NIOCore
import NIOPosix

/// Turns call messages into replies: header checks on the event loop (cheap, no blocking),
/// program execution on the thread pool, the duplicate request cache in between.
final class RPCDispatcher: Sendable {
    enum Outcome {
        /// Not a call (a reply, or garbage): close the TCP connection, drop the datagram.
        case unparseable(String)
        /// Send nothing.
        case none
        /// Answer at once.
        case reply(RPCReplyMessage)
        /// Answer when the future completes (`nil`: send nothing).
        case pending(EventLoopFuture<RPCReplyMessage?>)
    }

    let programs: [UInt32: any RPCProgramHandler]
    let cache: DuplicateRequestCache
    let threadPool: NIOThreadPool
    let logger: Logger

    init(programs: [any RPCProgramHandler], cacheEntries: Int, threadPool: NIOThreadPool, logger: Logger) {
        var table: [UInt32: any RPCProgramHandler] = [:]
        for program in programs {
            precondition(table[program.program] == nil, "program \(program.program) registered twice")
            table[program.program] = program
        }
        self.programs = table
        self.cache = DuplicateRequestCache(capacity: cacheEntries)
        self.threadPool = threadPool
        self.logger = logger
    }

    static func reply(xid: UInt32, _ body: RPCReplyBody, results: ByteBuffer? = nil) -> RPCReplyMessage {
        var header = ByteBuffer()
        header.reserveCapacity(32)
        RPCMessageCodec.writeReplyHeader(xid: xid, body: body, into: &header)
        return RPCReplyMessage(header: header, results: results)
    }

    func process(
        message: ByteBuffer,
        remoteAddress: SocketAddress,
        localAddress: SocketAddress?,
        transport: RPCTransport,
        eventLoop: EventLoop
    ) -> Outcome {
        var message = message
        let header: RPCCallHeader
        switch RPCMessageCodec.parseCall(&message) {
        case .unparseable(let reason):
            return .unparseable(reason)
        case .reject(let xid, let body):
            self.logger.debug(
                "RPC call rejected",
                metadata: ["xid": "\(xid)", "client": "\(remoteAddress)", "reply": "\(body)"]
            )
            return .reply(Self.reply(xid: xid, body))
        case .call(let parsed):
            header = parsed
        }

        guard let program = self.programs[header.program] else {
            return .reply(Self.reply(xid: header.xid, .programUnavailable))
        }
        let versions = program.versions
        guard versions.contains(header.version) else {
            return .reply(
                Self.reply(xid: header.xid, .programMismatch(low: versions.lowerBound, high: versions.upperBound))
            )
        }

        var cacheKey: DuplicateRequestKey? = nil
        if self.cache.capacity > 0, program.isNonIdempotent(version: header.version, procedure: header.procedure) {
            let key = DuplicateRequestKey(
                remoteAddress: remoteAddress,
                transport: transport,
                xid: header.xid,
                program: header.program,
                version: header.version,
                procedure: header.procedure,
                arguments: message
            )
            switch self.cache.begin(key) {
            case .new:
                cacheKey = key
            case .inProgress:
                self.logger.debug(
                    "dropping retransmission of a call in progress",
                    metadata: ["xid": "\(header.xid)", "client": "\(remoteAddress)"]
                )
                return .none
            case .replay(let reply):
                self.logger.debug(
                    "answering retransmission from the duplicate request cache",
                    metadata: ["xid": "\(header.xid)", "client": "\(remoteAddress)"]
                )
                return .reply(reply)
            }
        }

        var logger = self.logger
        logger[metadataKey: "xid"] = "\(header.xid)"
        logger[metadataKey: "client"] = "\(remoteAddress.ipAddress ?? "\(remoteAddress)"):\(remoteAddress.port ?? 0)"
        logger[metadataKey: "prog"] = "\(header.program)"
        logger[metadataKey: "vers"] = "\(header.version)"
        logger[metadataKey: "proc"] = "\(header.procedure)"
        let context = RPCCallContext(
            xid: header.xid,
            program: header.program,
            version: header.version,
            procedure: header.procedure,
            credential: header.credential,
            remoteAddress: remoteAddress,
            localAddress: localAddress,
            transport: transport,
            logger: logger
        )
        let arguments = message
        let cache = self.cache
        let cacheKeyOfCall = cacheKey
        let future = self.threadPool.runIfActive(eventLoop: eventLoop) { () -> RPCReplyMessage? in
            var arguments = arguments
            let reply = program.handle(context, arguments: &arguments)
            let message: RPCReplyMessage?
            switch reply {
            case .success(let results): message = Self.reply(xid: context.xid, .success, results: results)
            case .procedureUnavailable: message = Self.reply(xid: context.xid, .procedureUnavailable)
            case .garbageArguments: message = Self.reply(xid: context.xid, .garbageArguments)
            case .systemError: message = Self.reply(xid: context.xid, .systemError)
            case .authError(let stat): message = Self.reply(xid: context.xid, .authError(stat))
            case .drop: message = nil
            }
            if let cacheKeyOfCall {
                cache.complete(cacheKeyOfCall, reply: message)
            }
            return message
        }
        if let cacheKeyOfCall {
            // The pool refused the work (shutting down): forget the call.
            future.whenFailure { _ in cache.complete(cacheKeyOfCall, reply: nil) }
        }
        return .pending(future)
    }
}
