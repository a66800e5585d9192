import Basics
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// What a handler running on a pool worker may tell the RPC layer (see `blocking`, `holdReply`).
public enum RPCWorker {
    static let current = ThreadLocalWorker()

    /// Runs `wait`, a sleep on the disk (a namespace change waiting for its group commit, a shared fsync), with the
    /// calling worker not counted against its connection's `maxWorkersPerConnection`: a call of the same connection
    /// waiting for a worker gets one meanwhile. Group commit only pays when the changes arriving during a flush run;
    /// with at most 4 busy workers a connection's batch could never hold more than 4 changes. Outside a pool worker
    /// it just runs `wait`.
    public static func blocking(_ wait: () -> Void) {
        guard let worker = Self.current.get() else { return wait() }
        worker.work.blocking(wait)
    }

    /// True on a pool worker of a TCP connection, where the running call's reply may be held (`holdReply`).
    public static var mayHoldReplies: Bool { Self.current.get() != nil }

    /// Holds the reply of the call running on this thread until `hold` releases it; the worker takes the connection's
    /// next call meanwhile. The duplicate request cache records the reply only when it is released. Only where
    /// `mayHoldReplies`; elsewhere the program must wait itself.
    public static func holdReply(_ hold: RPCReplyHold) {
        guard let worker = Self.current.get() else {
            preconditionFailure("RPCWorker.holdReply outside a connection's pool worker (check mayHoldReplies)")
        }
        worker.hold = hold
    }

    /// The hold the running call asked for so far (nil: its reply leaves as soon as it is answered). A wrapper of a
    /// program (metrics) replaces it with `holdReply` to learn when, and as what, the reply is released.
    public static var currentHold: RPCReplyHold? { Self.current.get()?.hold }

    /// For a wrapper of a program (metrics, the call trace): calls `left` with the reply the running call's `reply`
    /// leaves as: at once, or, when the call's reply is held, once it is released (what it was answered, or the error
    /// a failed flush made of it), before it is sent.
    public static func whenReplyLeaves(_ reply: RPCReply, _ left: @escaping @Sendable (RPCReply) -> Void) {
        guard let hold = Self.currentHold else { return left(reply) }
        Self.holdReply(
            RPCReplyHold(
                whenReleased: { release in
                    hold.whenReleased { replacement in
                        left(replacement ?? reply)
                        release(replacement)
                    }
                },
                settle: hold.settle))
    }
}

/// What a held reply waits for (`RPCWorker.holdReply`): the reply of a namespace change may leave only once the
/// change is durable, and the changes of many calls become durable together (one group commit's flush).
public struct RPCReplyHold: Sendable {
    /// Registers `release`, to be called once from any thread when the reply may leave: with nil to send it as the
    /// program answered it, or with the reply to send instead (an error: what the reply reported could not be made
    /// durable).
    public var whenReleased: @Sendable (_ release: @escaping @Sendable (RPCReply?) -> Void) -> Void
    /// Sees to it that the release comes (leads the flush when none runs; may block). The worker calls it right after
    /// `whenReleased`.
    public var settle: @Sendable () -> Void

    public init(
        whenReleased: @escaping @Sendable (_ release: @escaping @Sendable (RPCReply?) -> Void) -> Void,
        settle: @escaping @Sendable () -> Void
    ) {
        self.whenReleased = whenReleased
        self.settle = settle
    }
}

/// One pool worker taking a connection's calls: the connection, and the hold the running call asked for.
final class RPCWorkerThread {
    unowned let work: RPCConnectionWork
    var hold: RPCReplyHold?

    init(work: RPCConnectionWork) { self.work = work }
}

/// The worker the current thread is (a pthread key: pool threads are not tasks).
final class ThreadLocalWorker: @unchecked Sendable {
    private var key = pthread_key_t()

    init() { pthread_key_create(&self.key, nil) }

    func set(_ worker: RPCWorkerThread?) {
        pthread_setspecific(self.key, worker.map { Unmanaged.passUnretained($0).toOpaque() })
    }

    func get() -> RPCWorkerThread? {
        guard let pointer = pthread_getspecific(self.key) else { return nil }
        return Unmanaged<RPCWorkerThread>.fromOpaque(pointer).takeUnretainedValue()
    }
}

/// The calls of one TCP connection on their way through the thread pool, and their results on
/// the way back, in batches.
///
/// Profiling GETATTR at 32 calls in flight showed the two thread hops per call (a condition
/// signal to wake a pool thread, an event-loop wake-up per result) as the largest cost of the
/// RPC layer. Here pool workers take calls from the connection's queue until it is empty, so a
/// busy connection wakes a thread only when its backlog outgrows the workers already on their
/// way; and results gather in one list that the event loop is woken once for. A held reply
/// (`RPCWorker.holdReply`) joins that list when it is released, from whichever thread releases it.
final class RPCConnectionWork: Sendable {
    private struct State {
        var calls = CircularBuffer<RPCDispatcher.PreparedCall>()
        var results: [RPCDispatcher.Execution] = []
        /// Held replies released since the event loop last took the results: finished there (duplicate request
        /// cache, reply bytes), not on the thread whose flush released them, which has the next flush to lead.
        var released: [(call: RPCDispatcher.PreparedCall, reply: RPCReply)] = []
        /// Workers submitted to the pool and not yet finished.
        var workers = 0
        /// Of those, the ones not yet running (each will take a call).
        var startingWorkers = 0
        var deliveryScheduled = false
        /// Hands the results to the connection's handler on its event loop.
        var deliver: (@Sendable () -> Void)?
        var closed = false
    }

    // The house lock: `Synchronization.Mutex` spins before it sleeps, which on two busy cores burnt the CPU the
    // thread holding it needed.
    private let state = Locked(State())
    private let dispatcher: RPCDispatcher
    private let ledger: RPCConnectionLedger
    private let threadPool: NIOThreadPool
    private let maxWorkers: Int

    init(dispatcher: RPCDispatcher, ledger: RPCConnectionLedger, maxWorkers: Int) {
        self.dispatcher = dispatcher
        self.ledger = ledger
        self.threadPool = dispatcher.threadPool
        self.maxWorkers = max(1, maxWorkers)
    }

    /// Sets what wakes the handler for results.
    func setDelivery(_ deliver: @escaping @Sendable () -> Void) {
        self.state.withLock { $0.deliver = deliver }
    }

    /// The connection closed: calls not started are forgotten, results not delivered are
    /// dropped (their reply bytes uncounted), and so are those of calls still running.
    func close() {
        let (calls, results, released) = self.state.withLock { state in
            state.deliver = nil
            state.closed = true
            let calls = Array(state.calls)
            state.calls.removeAll()
            let results = state.results
            state.results.removeAll()
            let released = state.released
            state.released.removeAll()
            return (calls, results, released)
        }
        for call in calls {
            self.dispatcher.abandon(call)
        }
        for result in results {
            self.drop(result)
        }
        for (call, reply) in released {
            // Finished anyway: the duplicate request cache keeps the reply for a retransmission on a new connection.
            self.drop(self.dispatcher.release(call, reply, ledger: self.ledger))
        }
    }

    private func drop(_ result: RPCDispatcher.Execution) {
        switch result {
        case .reply(let reply):
            if let reply { self.ledger.replyGone(bytes: reply.byteCount) }
        case .deferred(let call), .notRun(let call):
            self.dispatcher.abandon(call)
        }
    }

    /// Queues a call for the pool (event loop).
    func enqueue(_ call: RPCDispatcher.PreparedCall) {
        let spawn = self.state.withLock { state -> Bool in
            state.calls.append(call)
            // Busy workers may be blocked for long (a cold read): a call waiting beyond the
            // workers already starting gets one of its own, up to the limit.
            guard state.workers < self.maxWorkers, state.calls.count > state.startingWorkers else { return false }
            state.workers += 1
            state.startingWorkers += 1
            return true
        }
        if spawn {
            self.threadPool.submit { shouldRun in self.work(shouldRun) }
        }
    }

    /// See `RPCWorker.blocking`: while `wait` sleeps, this worker does not count as busy, so a queued call gets a
    /// worker of its own (up to the limit); it counts again once `wait` returns.
    func blocking(_ wait: () -> Void) {
        let spawn = self.state.withLock { state -> Bool in
            state.workers -= 1
            guard state.workers < self.maxWorkers, state.calls.count > state.startingWorkers, !state.closed else {
                return false
            }
            state.workers += 1
            state.startingWorkers += 1
            return true
        }
        if spawn {
            self.threadPool.submit { shouldRun in self.work(shouldRun) }
        }
        wait()
        self.state.withLock { $0.workers += 1 }
    }

    /// The results gathered since the last call (event loop).
    func takeResults() -> [RPCDispatcher.Execution] {
        let (results, released) = self.state.withLock { state in
            state.deliveryScheduled = false
            let results = state.results
            state.results.removeAll(keepingCapacity: true)
            let released = state.released
            state.released.removeAll(keepingCapacity: true)
            return (results, released)
        }
        guard !released.isEmpty else { return results }
        return results + released.map { self.dispatcher.release($0.call, $0.reply, ledger: self.ledger) }
    }

    private func work(_ shouldRun: NIOThreadPool.WorkItemState) {
        let worker = RPCWorkerThread(work: self)
        RPCWorker.current.set(worker)
        defer { RPCWorker.current.set(nil) }
        var first = true
        while true {
            let call = self.state.withLock { state -> RPCDispatcher.PreparedCall? in
                if first {
                    state.startingWorkers -= 1
                    first = false
                }
                if let call = state.calls.popFirst() { return call }
                state.workers -= 1
                return nil
            }
            guard let call else { return }
            guard case .active = shouldRun else {
                self.add(.notRun(call))  // the pool is shutting down
                continue
            }
            switch self.dispatcher.runHolding(call, ledger: self.ledger) {
            case .finished(let result):
                self.add(result)
            case .held(let reply, let hold):
                hold.whenReleased { replacement in self.release(call, replacement ?? reply) }
                hold.settle()
            }
        }
    }

    /// A held reply was released (any thread): the event loop finishes and sends it.
    private func release(_ call: RPCDispatcher.PreparedCall, _ reply: RPCReply) {
        let queued = self.handToEventLoop { $0.released.append((call, reply)) }
        if !queued {
            // Finished anyway: the duplicate request cache keeps the reply for a retransmission on a new connection.
            self.drop(self.dispatcher.release(call, reply, ledger: self.ledger))
        }
    }

    /// A call's result joins the list for the event loop (any thread).
    private func add(_ result: RPCDispatcher.Execution) {
        if !self.handToEventLoop({ $0.results.append(result) }) { self.drop(result) }
    }

    /// Queues something for the event loop with `append` and wakes it unless a wake-up is on its way already; false,
    /// with nothing queued, once the connection closed.
    private func handToEventLoop(_ append: (inout State) -> Void) -> Bool {
        let (deliver, closed) = self.state.withLock { state -> ((@Sendable () -> Void)?, Bool) in
            if state.closed { return (nil, true) }
            append(&state)
            guard !state.deliveryScheduled else { return (nil, false) }
            state.deliveryScheduled = true
            return (state.deliver, false)
        }
        deliver?()
        return !closed
    }
}
