import Glibc
import Logging
import NIOCore

/// One TCP connection: bytes in, cut into records (`RecordMarkingDecoder`), replies out in whatever order they
/// complete.
///
/// Bounded in what it may take from the server:
/// - at most `maxOutstandingPerConnection` calls execute at once;
/// - replies computed but unsent count against the connection
///   (`maxQueuedReplyBytesPerConnection`) and against all connections
///   (`maxQueuedReplyBytes`); over those, calls wait (even those already handed to the pool
///   check again before they run) and nothing more is read, so the kernel's receive window
///   pushes back on the client; a connection whose replies do not move for
///   `replyStallTimeout` is closed;
/// - the connection counts against `maxConnections` (the idle one longest gets closed at the
///   limit).
final class RPCTCPConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = IOData

    private let dispatcher: RPCDispatcher
    private let configuration: RPCServerConfiguration
    private let maxOutstanding: Int
    private let maxConnections: Int
    private let logger: Logger
    /// Cuts the bytes read into records. Driven here rather than by NIO's `ByteToMessageHandler`: that was one more
    /// pipeline step per read, and its generic code (not specialised across modules) looked up the decoder's
    /// witness tables and metadata on every call.
    private var decoder: RecordMarkingDecoder
    /// Bytes read and not yet part of a whole record.
    private var received: ByteBuffer?
    private var ledger: RPCConnectionLedger?
    private var work: RPCConnectionWork?
    /// Calls read but not handed to the pool yet (or handed back, deferred), oldest first.
    private var waiting = CircularBuffer<RPCDispatcher.PreparedCall>()
    /// Calls handed to the pool and not yet back.
    private var executing = 0
    private var readHeldBack = false
    private var isClosed = false
    /// Shutting down: read no more calls; close once the executing ones have replied.
    private var isDraining = false
    /// The last reply written, so a drained connection closes only after it is flushed.
    private var lastWrite: EventLoopFuture<Void>?
    /// When a reply last finished going out (or the first one was queued after a quiet time).
    private var lastWriteProgress = NIODeadline.now()
    private var stallCheck: Scheduled<Void>?
    /// Closes the connection once nothing was read or written for `idleConnectionTimeout` (`watchForIdle`).
    private var idleCheck: Scheduled<Void>?
    /// A call was read since the connection's activity time was last taken (taken once per read burst).
    private var readSinceTouch = false
    /// Replies written since the last flush: coalesced bytes, then buffers to write as they
    /// are, and the reply bytes they account for.
    private var batchBuffer: ByteBuffer?
    private var batchWrites: [Outgoing] = []
    private var batchBytes = 0
    private var flushScheduled = false
    /// Inside a section that flushes at its end (a read burst, up to `channelReadComplete`; a delivery of results):
    /// replies written meanwhile need no task scheduled for their flush. At one call in flight that task (a closure
    /// allocated, the loop's task queue locked and drained) was a good part of an inline GETATTR's own cost.
    private var flushesAtEnd = false
    /// Inside `flushReplies`. A write that completes at once lets waiting calls start there, and one answered at once
    /// is flushed by a task: the section the flush ends has flushed already.
    private var isFlushing = false
    private var remoteAddress: SocketAddress?
    private var localAddress: SocketAddress?
    /// Ranges of files being sent (written, not yet all out), by file; `fileCheck` watches that the files still hold
    /// them while they are.
    private var sendingFiles: [ObjectIdentifier: RPCFileResults] = [:]
    private var fileCheck: Scheduled<Void>?
    /// The connection's socket, for replies written without NIO (`writeDirectly`); nil where NIO lends none.
    private var descriptor: CInt?
    /// Batches of replies handed to NIO whose writes have not completed yet.
    private var nioWritesInFlight = 0

    /// What a flush writes: bytes, or a range of a file.
    private enum Outgoing {
        case bytes(ByteBuffer)
        case file(RPCFileResults)
    }

    init(
        dispatcher: RPCDispatcher, configuration: RPCServerConfiguration, maxConnections: Int, logger: Logger,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) {
        self.decoder = RecordMarkingDecoder(
            maxRecordBytes: configuration.maxRecordBytes, maxFragmentsPerRecord: configuration.maxFragmentsPerRecord,
            allocator: allocator)
        self.dispatcher = dispatcher
        self.configuration = configuration
        self.maxOutstanding = max(1, configuration.maxOutstandingPerConnection)
        self.maxConnections = max(1, maxConnections)
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.remoteAddress = context.channel.remoteAddress
        self.localAddress = context.channel.localAddress
        let resources = self.configuration.resources
        let ledger = RPCConnectionLedger(
            channel: context.channel, resources: resources, configuration: self.configuration)
        self.ledger = ledger
        let work = RPCConnectionWork(
            dispatcher: self.dispatcher,
            ledger: ledger,
            maxWorkers: min(self.maxOutstanding, max(1, self.configuration.maxWorkersPerConnection))
        )
        self.work = work
        let eventLoop = context.eventLoop
        self.descriptor = try? context.pipeline.syncOperations.withUnsafeTransportIfAvailable(
            of: NIOBSDSocket.Handle.self
        ) { $0 }
        let handler = NIOLoopBound((self, context), eventLoop: eventLoop)
        work.setDelivery {
            eventLoop.execute {
                let (handler, context) = handler.value
                handler.deliverResults(context: context)
            }
        }
        switch resources.admit(ledger, limit: self.maxConnections) {
        case .admitted:
            self.watchForIdle(context: context)
        case .admittedClosingIdle:
            self.watchForIdle(context: context)
            self.logger.debug(
                "at the connection limit: closed the connection idle longest",
                metadata: ["client": "\(self.clientDescription)", "limit": "\(self.maxConnections)"]
            )
        case .refused:
            self.logger.notice(
                "refusing RPC connection: at the connection limit and no connection is idle (raise maxConnections)",
                metadata: ["client": "\(self.clientDescription)", "limit": "\(self.maxConnections)"]
            )
            self.closeNow(context: context)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.remoteAddress = context.channel.remoteAddress
        self.localAddress = context.channel.localAddress
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.forget()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.forget()
    }

    /// The connection is gone: leave the connection table, forget calls that will not run.
    private func forget() {
        self.isClosed = true
        self.descriptor = nil
        // Also breaks the cycle handler → work → delivery closure → handler.
        self.work?.close()
        self.stallCheck?.cancel()
        self.stallCheck = nil
        self.idleCheck?.cancel()
        self.idleCheck = nil
        self.fileCheck?.cancel()
        self.fileCheck = nil
        if let ledger = self.ledger {
            ledger.resources.remove(ledger)
        }
        while let call = self.waiting.popFirst() {
            self.dispatcher.abandon(call)
            self.ledger?.callsInProgress.subtract(1, ordering: .relaxed)
        }
    }

    private var clientDescription: String {
        self.remoteAddress.map { "\($0)" } ?? "?"
    }

    private func closeNow(context: ChannelHandlerContext) {
        guard !self.isClosed else { return }
        self.isClosed = true
        self.descriptor = nil
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.isClosed else { return }
        var bytes = Self.unwrapInboundIn(data)
        if var earlier = self.received.take() {
            earlier.writeBuffer(&bytes)
            bytes = earlier
        }
        while !self.isClosed {
            let record: ByteBuffer?
            do {
                record = try self.decoder.decode(buffer: &bytes)
            } catch {
                self.logger.debug(
                    "closing RPC connection", metadata: ["client": "\(self.clientDescription)", "error": "\(error)"])
                self.closeNow(context: context)
                return
            }
            guard let record else { break }
            self.received(record, context: context)
        }
        guard bytes.readableBytes > 0 else { return }
        // What a record still needs stays; the bytes before it go once they are half the buffer (as NIO's
        // ByteToMessageHandler does), so keeping a long record's start costs a copy of it at most once per doubling.
        if bytes.readerIndex > bytes.capacity / 2 { bytes.discardReadBytes() }
        self.received = bytes
    }

    /// One whole record read.
    private func received(_ record: ByteBuffer, context: ChannelHandlerContext) {
        guard !self.isClosed, let ledger = self.ledger,
            let remoteAddress = self.remoteAddress ?? context.channel.remoteAddress
        else {
            return
        }
        self.readSinceTouch = true
        self.flushesAtEnd = true
        switch self.dispatcher.prepare(
            message: record,
            remoteAddress: remoteAddress,
            localAddress: self.localAddress,
            transport: .tcp
        ) {
        case .unparseable(let reason):
            self.logger.debug(
                "closing RPC connection: record is not a call",
                metadata: ["client": "\(remoteAddress)", "reason": "\(reason)"]
            )
            self.closeNow(context: context)
        case .none:
            break
        case .reply(let reply):
            self.write(reply, alreadyCounted: false, context: context)
        case .call(let call):
            ledger.callsInProgress.add(1, ordering: .relaxed)
            self.waiting.append(call)
            self.startWaitingCalls(context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.flushesAtEnd = false
        if self.readSinceTouch {
            self.readSinceTouch = false
            self.ledger?.touch()
        }
        if self.flushScheduled {
            self.flushReplies(context: context)
        }
        context.fireChannelReadComplete()
    }

    /// Hands waiting calls to the pool while the connection's limits allow.
    private func startWaitingCalls(context: ChannelHandlerContext) {
        guard let ledger = self.ledger else { return }
        while !self.isClosed, !self.isDraining, self.executing < self.maxOutstanding, !self.waiting.isEmpty,
            ledger.mayStartCall
        {
            let call = self.waiting.removeFirst()
            if call.runsInline {
                // Checked above that it may start: it cannot be deferred.
                if case .reply(let reply) = self.dispatcher.run(call, ledger: ledger) {
                    ledger.callsInProgress.subtract(1, ordering: .relaxed)
                    if let reply {
                        self.write(reply, alreadyCounted: true, context: context)
                    }
                } else {
                    self.waiting.prepend(call)
                    break
                }
                continue
            }
            if call.triesInline, case .reply(let reply) = self.dispatcher.answerInline(call, ledger: ledger) {
                ledger.callsInProgress.subtract(1, ordering: .relaxed)
                if let reply {
                    self.write(reply, alreadyCounted: true, context: context)
                }
                continue
            }
            self.executing += 1
            self.work?.enqueue(call)
        }
    }

    /// Results of calls from the pool, delivered in batches (`RPCConnectionWork`).
    private func deliverResults(context: ChannelHandlerContext) {
        guard let work = self.work, let ledger = self.ledger else { return }
        let flushesAtEnd = self.flushesAtEnd
        self.flushesAtEnd = true
        defer { self.flushesAtEnd = flushesAtEnd }
        for result in work.takeResults() {
            self.executing -= 1
            switch result {
            case .reply(let reply):
                ledger.callsInProgress.subtract(1, ordering: .relaxed)
                if let reply {
                    self.write(reply, alreadyCounted: true, context: context)
                }
            case .deferred(let call):
                if self.isClosed || self.isDraining {
                    self.dispatcher.abandon(call)
                    ledger.callsInProgress.subtract(1, ordering: .relaxed)
                } else {
                    // Runs again once this connection's replies went out.
                    self.waiting.prepend(call)
                }
            case .notRun(let call):
                self.dispatcher.abandon(call)
                ledger.callsInProgress.subtract(1, ordering: .relaxed)
            }
        }
        self.startWaitingCalls(context: context)
        self.resumeReadingIfPossible(context: context)
        self.closeIfDrained(context: context)
        if self.flushScheduled {
            self.flushReplies(context: context)
        }
    }

    private var mayRead: Bool {
        guard !self.isDraining, !self.isClosed, self.waiting.isEmpty, self.executing < self.maxOutstanding else {
            return false
        }
        return !(self.ledger?.isOverItsReplyLimit ?? false)
    }

    private func closeIfDrained(context: ChannelHandlerContext) {
        guard self.isDraining, self.executing == 0, !self.isClosed else { return }
        // Calls not started yet are left to the client's retransmission to the next server.
        while let call = self.waiting.popFirst() {
            self.dispatcher.abandon(call)
            self.ledger?.callsInProgress.subtract(1, ordering: .relaxed)
        }
        self.flushReplies(context: context)
        self.isClosed = true
        let flushed = self.lastWrite ?? context.eventLoop.makeSucceededVoidFuture()
        flushed.assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        if self.readHeldBack, self.mayRead, context.channel.isWritable {
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
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug(
            "closing RPC connection",
            metadata: ["client": "\(self.clientDescription)", "error": "\(error)"]
        )
        self.closeNow(context: context)
    }

    /// Results up to this size are copied next to their header into the batch buffer (one
    /// write, one iovec); larger ones (READ data) go out as buffers of their own, uncopied.
    private static let coalescedResultBytes = 16 << 10

    private func write(_ reply: RPCReplyMessage, alreadyCounted: Bool, context: ChannelHandlerContext) {
        guard let ledger = self.ledger else { return }
        let bytes = reply.byteCount
        guard !self.isClosed else {
            if alreadyCounted { ledger.replyGone(bytes: bytes) }
            return
        }
        if !alreadyCounted { ledger.replyQueued(bytes: bytes) }
        let results = reply.results ?? reply.fileResults?.head
        let resultBytes = results?.readableBytes ?? 0
        let coalesce = resultBytes <= Self.coalescedResultBytes
        let needed = 4 + reply.headerByteCount + (coalesce ? resultBytes : 0)
        if self.batchBuffer == nil {
            self.batchBuffer = context.channel.allocator.buffer(capacity: max(2048, needed))
        }
        self.batchBuffer!.writeInteger(RecordMarking.header(length: bytes), endianness: .big)
        reply.writeHeader(into: &self.batchBuffer!)
        if let results, resultBytes > 0 {
            if coalesce {
                self.batchBuffer!.writeImmutableBuffer(results)
            } else {
                // Keep the order: what is coalesced so far, then these results uncopied.
                self.batchWrites.append(.bytes(self.batchBuffer.take()!))
                self.batchWrites.append(.bytes(results))
            }
        }
        if let file = reply.fileResults {
            if let buffer = self.batchBuffer.take(), buffer.readableBytes > 0 {
                self.batchWrites.append(.bytes(buffer))
            }
            self.batchWrites.append(.file(file))
            if file.tail.readableBytes > 0 {
                self.batchBuffer = context.channel.allocator.buffer(capacity: 2048)
                self.batchBuffer!.writeImmutableBuffer(file.tail)
            }
        }
        self.batchBytes += bytes
        if !self.flushScheduled {
            // Replies completing in this event-loop tick leave in one write and one flush.
            self.flushScheduled = true
            if !self.flushesAtEnd || self.isFlushing {
                context.eventLoop.assumeIsolated().execute {
                    self.flushReplies(context: context)
                }
            }
        }
    }

    /// Writes the replies gathered since the last flush, with one promise for all of them: NIO
    /// completes writes in order, so when the last is written, all are.
    private func flushReplies(context: ChannelHandlerContext) {
        self.isFlushing = true
        defer { self.isFlushing = false }
        self.flushScheduled = false
        if let buffer = self.batchBuffer.take(), buffer.readableBytes > 0 {
            self.batchWrites.append(.bytes(buffer))
        }
        let bytes = self.batchBytes
        self.batchBytes = 0
        guard let ledger = self.ledger, !self.batchWrites.isEmpty else { return }
        guard !self.isClosed else {
            self.batchWrites.removeAll(keepingCapacity: true)
            ledger.replyGone(bytes: bytes)
            return
        }
        if self.writeDirectly(context: context) {
            self.batchWrites.removeAll(keepingCapacity: true)
            self.lastWrite = nil
            self.wrote(bytes: bytes, ledger: ledger, context: context)
            return
        }
        self.nioWritesInFlight += 1
        let written = context.eventLoop.makePromise(of: Void.self)
        let last = self.batchWrites.count - 1
        for (index, outgoing) in self.batchWrites.enumerated() {
            let promise = index == last ? written : nil
            switch outgoing {
            case .bytes(let buffer):
                context.write(Self.wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
            case .file(let file):
                self.writeFile(file, promise: promise, context: context)
            }
        }
        self.batchWrites.removeAll(keepingCapacity: true)
        context.flush()
        self.lastWrite = written.futureResult
        written.futureResult.assumeIsolated().whenComplete { _ in
            self.nioWritesInFlight -= 1
            self.wrote(bytes: bytes, ledger: ledger, context: context)
        }
        self.watchForStall(context: context)
        if !self.sendingFiles.isEmpty {
            self.watchSendingFiles(context: context)
        }
    }

    /// A batch of replies of `bytes` left.
    private func wrote(bytes: Int, ledger: RPCConnectionLedger, context: ChannelHandlerContext) {
        ledger.replyGone(bytes: bytes)
        let now = NIODeadline.now()
        ledger.touch(at: now)
        self.lastWriteProgress = now
        self.startWaitingCalls(context: context)
        self.resumeReadingIfPossible(context: context)
    }

    /// Writes a batch that is one buffer (every reply but large READs) to the socket itself, when NIO has nothing of
    /// this connection left to write: true when all of it went. Else what went is taken off the buffer, and NIO
    /// writes the rest (and meets any error the socket has). NIO's write path (the pipeline's write and flush, its
    /// queue of pending writes, a promise and its callback) cost as much user time per call as the rest of an inline
    /// GETATTR together; the bytes go by the same `write`. Only with NIO's queue empty, so no record is ever
    /// interleaved with another; only while the channel is active, so never to a descriptor NIO closed (it marks the
    /// channel inactive before it calls out to any handler or promise after closing it).
    private func writeDirectly(context: ChannelHandlerContext) -> Bool {
        guard self.nioWritesInFlight == 0, self.batchWrites.count == 1, case .bytes(var buffer) = self.batchWrites[0],
            let descriptor = self.descriptor, context.channel.isActive
        else { return false }
        let total = buffer.readableBytes
        var done = 0
        while done < total {
            let count = buffer.withUnsafeReadableBytes { raw in
                Glibc.write(descriptor, raw.baseAddress! + done, total - done)
            }
            if count > 0 {
                done += count
            } else if count < 0, errno == EINTR {
                continue
            } else {
                break
            }
        }
        if done == total { return true }
        buffer.moveReaderIndex(forwardBy: done)
        self.batchWrites[0] = .bytes(buffer)
        return false
    }

    /// Writes a range of a file (sendfile). NIO's handle borrows the reply's descriptor while the write lasts; the
    /// reply closes it when it goes.
    private func writeFile(_ file: RPCFileResults, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: file.file.descriptor)
        let region = FileRegion(fileHandle: handle, readerIndex: file.offset, endIndex: file.offset + file.count)
        let done = promise ?? context.eventLoop.makePromise(of: Void.self)
        let key = ObjectIdentifier(file.file)
        self.sendingFiles[key] = file
        done.futureResult.assumeIsolated().whenComplete { _ in
            _ = try? handle.takeDescriptorOwnership()
            self.sendingFiles[key] = nil
        }
        context.write(Self.wrapOutboundOut(.fileRegion(region)), promise: done)
    }

    /// While ranges of files are being sent, checks now and then that each file still holds its range. One that got
    /// shorter (truncated meanwhile) can no longer be sent whole: NIO would retry the send for ever, and the reply's
    /// length already went out. The connection is closed instead; the client sends its calls again.
    private func watchSendingFiles(context: ChannelHandlerContext) {
        guard self.fileCheck == nil, !self.isClosed else { return }
        self.fileCheck = context.eventLoop.assumeIsolated().scheduleTask(in: Self.fileCheckInterval) {
            self.fileCheck = nil
            guard !self.isClosed, !self.sendingFiles.isEmpty else { return }
            for file in self.sendingFiles.values where !Self.stillHolds(file) {
                self.logger.notice(
                    "closing RPC connection: a file a reply was being sent from got shorter meanwhile (truncated)",
                    metadata: ["client": "\(self.clientDescription)"])
                self.closeNow(context: context)
                return
            }
            self.watchSendingFiles(context: context)
        }
    }

    static let fileCheckInterval = TimeAmount.milliseconds(20)

    /// Whether the file of `file` still holds its whole range.
    static func stillHolds(_ file: RPCFileResults) -> Bool {
        var st = stat()
        guard fstat(file.file.descriptor, &st) == 0 else { return false }
        return Int(st.st_size) >= file.offset + file.count
    }

    /// Closes the connection when nothing was read from it or written to it for `idleConnectionTimeout` and no call
    /// of it is executing (a long call keeps its connection). The activity time is the ledger's, which the connection
    /// takes anyway (once per read burst, once per batch of replies written): NIO's `IdleStateHandler` did the same
    /// with a pipeline step on every read and write, two more clock reads and a callback on every write's promise,
    /// a measurable share of an inline GETATTR's own cost.
    private func watchForIdle(context: ChannelHandlerContext) {
        guard let timeout = self.configuration.idleConnectionTimeout, self.idleCheck == nil, !self.isClosed,
            let ledger = self.ledger
        else { return }
        let lastActivity = NIODeadline.uptimeNanoseconds(ledger.lastActivity.load(ordering: .relaxed))
        // A connection busy with a call is looked at again a whole timeout later, as a new idle period starts when
        // the call ends.
        let deadline = self.executing > 0 ? NIODeadline.now() + timeout : lastActivity + timeout
        self.idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.idleCheck = nil
            guard !self.isClosed else { return }
            let lastActivity = NIODeadline.uptimeNanoseconds(ledger.lastActivity.load(ordering: .relaxed))
            if self.executing == 0, NIODeadline.now() - lastActivity >= timeout {
                self.logger.debug("closing idle RPC connection", metadata: ["client": "\(self.clientDescription)"])
                self.closeNow(context: context)
            } else {
                self.watchForIdle(context: context)
            }
        }
    }

    /// A client that never reads: once replies are waiting, check that some go out within
    /// `replyStallTimeout`, else close (which frees them).
    private func watchForStall(context: ChannelHandlerContext) {
        guard self.stallCheck == nil, !self.isClosed, let ledger = self.ledger,
            ledger.queuedReplyBytes.load(ordering: .relaxed) > 0
        else { return }
        let timeout = self.configuration.replyStallTimeout
        // Progress is measured from now if the queue was empty until this reply.
        if NIODeadline.now() - self.lastWriteProgress > timeout { self.lastWriteProgress = .now() }
        self.stallCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: self.lastWriteProgress + timeout) {
            self.stallCheck = nil
            guard !self.isClosed, ledger.queuedReplyBytes.load(ordering: .relaxed) > 0 else { return }
            if NIODeadline.now() - self.lastWriteProgress >= timeout {
                self.logger.notice(
                    "closing RPC connection: its client has read no reply for \(timeout.nanoseconds / 1_000_000_000) s",
                    metadata: [
                        "client": "\(self.clientDescription)",
                        "unsent_bytes": "\(ledger.queuedReplyBytes.load(ordering: .relaxed))",
                    ]
                )
                self.closeNow(context: context)
            } else {
                self.watchForStall(context: context)
            }
        }
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
            self.logger.debug(
                "dropping RPC datagram: too many calls outstanding", metadata: ["client": "\(remoteAddress)"])
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
        switch self.dispatcher.prepare(
            message: envelope.data,
            remoteAddress: remoteAddress,
            localAddress: localAddress,
            transport: .udp
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
        case .call(let call):
            if call.runsInline {
                if case .reply(let reply?) = self.dispatcher.run(call, ledger: nil) {
                    self.send(reply, to: remoteAddress, context: context)
                }
                return
            }
            if call.triesInline, case .reply(let reply) = self.dispatcher.answerInline(call, ledger: nil) {
                if let reply { self.send(reply, to: remoteAddress, context: context) }
                return
            }
            self.outstanding += 1
            self.dispatcher.execute(call, ledger: nil, eventLoop: context.eventLoop)
                .hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                    self.outstanding -= 1
                    if case .success(.reply(let reply?)) = result {
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
        guard let datagram = reply.joined(allocator: context.channel.allocator) else {
            self.logger.debug("not answering: the file the reply's bytes came from is shorter now")
            return
        }
        let sent = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(
            Self.wrapOutboundOut(AddressedEnvelope(remoteAddress: remoteAddress, data: datagram)),
            promise: sent
        )
        self.lastSend = sent.futureResult
    }
}
