import Logging
import NIOCore
import NIOPosix

/// Turns call messages into replies: header checks on the event loop (cheap, no blocking),
/// program execution on the thread pool, the duplicate request cache in between.
final class RPCDispatcher: Sendable {
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
        RPCReplyMessage(xid: xid, body: body, results: results)
    }

    /// A call whose header passed every check, ready to execute.
    struct PreparedCall: Sendable {
        let program: any RPCProgramHandler
        let context: RPCCallContext
        let arguments: ByteBuffer
        /// Set when the duplicate request cache recorded the call as in progress.
        let cacheKey: DuplicateRequestKey?
        /// Runs on the event loop (`RPCProgramHandler.isNonBlocking`).
        let runsInline: Bool
        /// Offered to the program on the event loop first (`RPCProgramHandler.mayAnswerInline`).
        let triesInline: Bool
    }

    /// What `prepare` made of a message.
    enum Preparation {
        /// Not a call (a reply, or garbage): close the TCP connection, drop the datagram.
        case unparseable(String)
        /// Send nothing.
        case none
        /// Answer at once.
        case reply(RPCReplyMessage)
        /// Execute it (`execute`), or forget it (`abandon`).
        case call(PreparedCall)
    }

    /// What executing a prepared call gave.
    enum Execution: Sendable {
        /// The reply to send (`nil`: send nothing).
        case reply(RPCReplyMessage?)
        /// Not run: the connection's unsent replies are over its limit. Execute it again
        /// once they went out.
        case deferred(PreparedCall)
        /// Not run: the pool is shutting down. Forget it (`abandon`).
        case notRun(PreparedCall)
    }

    /// Header checks, on the event loop (cheap, no blocking).
    func prepare(
        message: ByteBuffer,
        remoteAddress: SocketAddress,
        localAddress: SocketAddress?,
        transport: RPCTransport
    ) -> Preparation {
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

        // RFC 5531 §9 / Linux svc_authenticate: a flavor the server does not implement is a
        // bad credential, for every program and procedure (NULL, MOUNT EXPORT and DUMP
        // included), before any program sees the call.
        if case .other = header.credential {
            return .reply(Self.reply(xid: header.xid, .authError(.badCredential)))
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

        let context = RPCCallContext(
            xid: header.xid,
            program: header.program,
            version: header.version,
            procedure: header.procedure,
            credential: header.credential,
            remoteAddress: remoteAddress,
            localAddress: localAddress,
            transport: transport,
            logger: self.logger
        )
        let runsInline = program.isNonBlocking(version: header.version, procedure: header.procedure)
        let triesInline =
            !runsInline && cacheKey == nil
            && program.mayAnswerInline(version: header.version, procedure: header.procedure)
        return .call(
            PreparedCall(
                program: program, context: context, arguments: message, cacheKey: cacheKey, runsInline: runsInline,
                triesInline: triesInline))
    }

    /// Runs a prepared call here and now (on the pool, or inline for a non-blocking
    /// procedure). With a `ledger`, the call does not start while its connection may not
    /// produce more replies (`.deferred`), and its reply is counted as queued on the connection
    /// before it leaves this thread.
    func run(_ call: PreparedCall, ledger: RPCConnectionLedger?) -> Execution {
        if let ledger, !ledger.mayStartCall {
            return .deferred(call)
        }
        var arguments = call.arguments
        return self.finish(call, call.program.handle(call.context, arguments: &arguments), ledger: ledger)
    }

    /// What `runHolding` made of a call.
    enum HeldExecution {
        case finished(Execution)
        /// The program held its reply (`RPCWorker.holdReply`): finish it with `release` once `hold` releases it.
        case held(RPCReply, RPCReplyHold)
    }

    /// `run` on a pool worker whose program may hold its reply: a held reply is neither recorded in the duplicate
    /// request cache nor counted against the connection until `release`.
    func runHolding(_ call: PreparedCall, ledger: RPCConnectionLedger) -> HeldExecution {
        if !ledger.mayStartCall {
            return .finished(.deferred(call))
        }
        var arguments = call.arguments
        let reply = call.program.handle(call.context, arguments: &arguments)
        if let worker = RPCWorker.current.get(), let hold = worker.hold {
            worker.hold = nil
            return .held(reply, hold)
        }
        return .finished(self.finish(call, reply, ledger: ledger))
    }

    /// Finishes a held call with the reply its hold released (any thread).
    func release(_ call: PreparedCall, _ reply: RPCReply, ledger: RPCConnectionLedger) -> Execution {
        self.finish(call, reply, ledger: ledger)
    }

    /// Answers a call the program may answer from memory (`triesInline`) here, on the event
    /// loop: nil when the program declines (run it on the pool then). The caller checked that
    /// the connection may start a call.
    func answerInline(_ call: PreparedCall, ledger: RPCConnectionLedger?) -> InlineAnswer {
        guard call.triesInline, let reply = call.program.handleInline(call.context, arguments: call.arguments) else {
            return .declined
        }
        guard case .reply(let message) = self.finish(call, reply, ledger: ledger) else { return .declined }
        return .reply(message)
    }

    /// What `answerInline` made of a call.
    enum InlineAnswer {
        /// The program could not answer without blocking: run the call on the pool.
        case declined
        /// Answered: the reply to send (`nil`: send nothing).
        case reply(RPCReplyMessage?)
    }

    private func finish(_ call: PreparedCall, _ reply: RPCReply, ledger: RPCConnectionLedger?) -> Execution {
        let context = call.context
        let message: RPCReplyMessage?
        switch reply {
        case .success(let results): message = Self.reply(xid: context.xid, .success, results: results)
        case .successFromFile(let results):
            message = RPCReplyMessage(xid: context.xid, body: .success, results: nil, fileResults: results)
        case .procedureUnavailable: message = Self.reply(xid: context.xid, .procedureUnavailable)
        case .garbageArguments: message = Self.reply(xid: context.xid, .garbageArguments)
        case .systemError: message = Self.reply(xid: context.xid, .systemError)
        case .authError(let stat): message = Self.reply(xid: context.xid, .authError(stat))
        case .drop: message = nil
        }
        if let cacheKey = call.cacheKey {
            self.cache.complete(cacheKey, reply: message)
        }
        if let ledger, let message {
            ledger.replyQueued(bytes: message.byteCount)
        }
        return .reply(message)
    }

    /// Runs a prepared call on the thread pool (see `run`).
    func execute(
        _ call: PreparedCall, ledger: RPCConnectionLedger?, eventLoop: any EventLoop
    ) -> EventLoopFuture<Execution> {
        let future = self.threadPool.runIfActive(eventLoop: eventLoop) { () -> Execution in
            self.run(call, ledger: ledger)
        }
        if let cacheKey = call.cacheKey {
            // The pool refused the work (shutting down): forget the call.
            let cache = self.cache
            future.whenFailure { _ in cache.complete(cacheKey, reply: nil) }
        }
        return future
    }

    /// Forgets a prepared call that will not run (its connection closed): a retransmission
    /// must then be executed, not dropped as "in progress".
    func abandon(_ call: PreparedCall) {
        if let cacheKey = call.cacheKey {
            self.cache.complete(cacheKey, reply: nil)
        }
    }
}
