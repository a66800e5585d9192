import NFS3
import NFS3Client
import NIOCore

/// One connection of the load generator and everything its calls need. Confined to the
/// connection's event loop: every field is touched only there (requests are issued from reply
/// callbacks, which run on that loop), so nothing is locked per call.
final class Worker: @unchecked Sendable {
    let client: NFS3Client
    /// 0..<connections.
    let index: Int
    let connections: Int
    /// Calls this worker keeps in flight.
    let queueDepth: Int
    /// The export root as this client sees it (its own handles: per-client uppers).
    let root: FileHandle3
    /// The object of the workload (the file, the directory), resolved at setup.
    var target: FileHandle3
    var targetSize: UInt64 = 0
    /// Names (lookup) or directory handles (mkdir-tree) prepared at setup or by a stage.
    var names: [[UInt8]] = []
    var directories: [FileHandle3] = []
    var payload = ByteBuffer()
    var blockSize = 1 << 20

    // Per phase, on the loop:
    var latencies: [UInt64] = []
    var units: Double = 0
    var errors = 0
    var firstError: String?
    private(set) var inFlight = 0

    init(client: NFS3Client, index: Int, connections: Int, queueDepth: Int, root: FileHandle3) {
        self.client = client
        self.index = index
        self.connections = connections
        self.queueDepth = queueDepth
        self.root = root
        self.target = root
    }

    var eventLoop: EventLoop { self.client.eventLoop }

    /// This worker's share of `total` operations: indices index, index + connections, ...
    func share(of total: Int) -> Int {
        Self.share(of: total, index: self.index, connections: self.connections)
    }

    static func share(of total: Int, index: Int, connections: Int) -> Int {
        total > index ? (total - index + connections - 1) / connections : 0
    }

    func globalIndex(_ local: Int) -> Int { self.index + local * self.connections }

    func resetCounters(expected: Int) {
        self.latencies.removeAll(keepingCapacity: true)
        self.latencies.reserveCapacity(expected)
        self.units = 0
        self.errors = 0
        self.firstError = nil
    }

    func recordError(_ message: @autoclosure () -> String) {
        self.errors += 1
        if self.firstError == nil { self.firstError = message() }
    }

    /// Runs `count` operations, `queueDepth` in flight; `operation(local index)` sends one and
    /// returns the units it did (bytes, entries, 1). Completes (never fails) when all are
    /// answered. Call on the event loop.
    func run(count: Int, _ operation: @escaping (Worker, Int) -> EventLoopFuture<Double>) -> EventLoopFuture<Void> {
        OperationLoop(worker: self, count: count, operation: operation).start()
    }

    /// Lists the tree under `top` with READDIRPLUS: one outstanding page per directory, up
    /// to `queueDepth` directories at once. Units are entries ("." and ".." left out).
    func walk(top: FileHandle3, dircount: UInt32, maxcount: UInt32) -> EventLoopFuture<Void> {
        TreeWalk(worker: self, top: top, dircount: dircount, maxcount: maxcount).start()
    }

    fileprivate func begin() { self.inFlight += 1 }

    fileprivate func end(start: UInt64) -> Int {
        self.latencies.append(monotonicNanoseconds() &- start)
        self.inFlight -= 1
        return self.inFlight
    }
}

/// The state of one `Worker.run`: confined to the worker's event loop.
private final class OperationLoop: @unchecked Sendable {
    let worker: Worker
    let count: Int
    let operation: (Worker, Int) -> EventLoopFuture<Double>
    let done: EventLoopPromise<Void>
    var next = 0
    var inFlight = 0

    init(worker: Worker, count: Int, operation: @escaping (Worker, Int) -> EventLoopFuture<Double>) {
        self.worker = worker
        self.count = count
        self.operation = operation
        self.done = worker.eventLoop.makePromise(of: Void.self)
    }

    func start() -> EventLoopFuture<Void> {
        if self.count <= 0 {
            self.done.succeed(())
        } else {
            self.pump()
        }
        return self.done.futureResult
    }

    func pump() {
        while self.inFlight < self.worker.queueDepth && self.next < self.count {
            let local = self.next
            self.next += 1
            self.inFlight += 1
            self.worker.begin()
            let start = monotonicNanoseconds()
            self.operation(self.worker, local).whenComplete { result in
                _ = self.worker.end(start: start)
                self.inFlight -= 1
                switch result {
                case .success(let units): self.worker.units += units
                case .failure(let error): self.worker.recordError("\(error)")
                }
                if self.next < self.count {
                    self.pump()
                } else if self.inFlight == 0 {
                    self.done.succeed(())
                }
            }
        }
    }
}

/// The state of one `Worker.walk`: confined to the worker's event loop.
private final class TreeWalk: @unchecked Sendable {
    let worker: Worker
    let dircount: UInt32
    let maxcount: UInt32
    let done: EventLoopPromise<Void>
    /// Pages still to fetch: (directory, cookie, verifier).
    var queue: [(FileHandle3, UInt64, CookieVerifier3)]
    var head = 0
    var inFlight = 0

    init(worker: Worker, top: FileHandle3, dircount: UInt32, maxcount: UInt32) {
        self.worker = worker
        self.dircount = dircount
        self.maxcount = maxcount
        self.queue = [(top, 0, .zero)]
        self.done = worker.eventLoop.makePromise(of: Void.self)
    }

    func start() -> EventLoopFuture<Void> {
        self.pump()
        return self.done.futureResult
    }

    func pump() {
        while self.inFlight < self.worker.queueDepth && self.head < self.queue.count {
            let (dir, cookie, verifier) = self.queue[self.head]
            self.head += 1
            if self.head > 4096 && self.head * 2 > self.queue.count {
                self.queue.removeFirst(self.head)
                self.head = 0
            }
            self.inFlight += 1
            self.worker.begin()
            let start = monotonicNanoseconds()
            self.worker.client.call(
                .readdirplus,
                ReadDirPlus3Args(
                    dir: dir, cookie: cookie, cookieverf: verifier, dircount: self.dircount, maxcount: self.maxcount),
                as: ReadDirPlus3Res.self
            ).whenComplete { result in
                _ = self.worker.end(start: start)
                self.inFlight -= 1
                self.absorb(result, dir: dir)
                self.pump()
                if self.inFlight == 0 && self.head >= self.queue.count { self.done.succeed(()) }
            }
        }
        if self.inFlight == 0 && self.head >= self.queue.count { self.done.succeed(()) }
    }

    private func absorb(_ result: Result<ReadDirPlus3Res, Error>, dir: FileHandle3) {
        switch result {
        case .success(.ok(let page)):
            for entry in page.entries where entry.name != [0x2e] && entry.name != [0x2e, 0x2e] {
                self.worker.units += 1
                if entry.nameAttributes.attributes?.type == .dir, let handle = entry.nameHandle.handle {
                    self.queue.append((handle, 0, .zero))
                }
            }
            if !page.eof {
                if let last = page.entries.last {
                    self.queue.append((dir, last.cookie, page.cookieverf))
                } else {
                    self.worker.recordError("READDIRPLUS: a page with no entries and no eof")
                }
            }
        case .success(.fail(let status, _)):
            self.worker.recordError("READDIRPLUS: \(status)")
        case .failure(let error):
            self.worker.recordError("READDIRPLUS: \(error)")
        }
    }
}
