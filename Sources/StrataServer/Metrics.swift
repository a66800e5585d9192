import Foundation
import NIOCore
import Prometheus
import SunRPC
import Synchronization
import Union

/// The server's Prometheus metrics. One registry per server (not the process-global
/// MetricsSystem), so several servers in one test process do not share counts.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let calls = Mutex<[String: CallInstruments]>([:])
    public let bytesRead: Counter
    public let bytesWritten: Counter
    public let copyUps: Counter
    public let copyUpBytes: Counter
    public let whiteoutsCreated: Counter
    public let clientsMounted: Gauge
    /// Where the union's counters come from, and what was last exported of them: the union keeps
    /// totals, Prometheus counters only go up, so each scrape adds the difference.
    let unionSource = Mutex<(read: (@Sendable () -> UnionStatistics)?, exported: UnionStatistics)>(
        (nil, UnionStatistics(copyUps: 0, copyUpBytes: 0, whiteoutsCreated: 0)))

    static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    public init() {
        self.bytesRead = self.registry.makeCounter(name: "strata_nfs_read_bytes_total", help: "Bytes returned by NFS READ")
        self.bytesWritten = self.registry.makeCounter(name: "strata_nfs_written_bytes_total", help: "Bytes accepted by NFS WRITE")
        self.copyUps = self.registry.makeCounter(name: "strata_copy_ups_total", help: "Objects copied up from a lower layer")
        self.copyUpBytes = self.registry.makeCounter(name: "strata_copy_up_bytes_total", help: "Bytes copied up from lower layers")
        self.whiteoutsCreated = self.registry.makeCounter(name: "strata_whiteouts_created_total", help: "Whiteouts recorded in sidecars")
        self.clientsMounted = self.registry.makeGauge(name: "strata_clients_mounted", help: "Entries in the mount table")
    }

    /// The counters and histogram of one procedure.
    struct CallInstruments: Sendable {
        let count: Counter
        let errors: Counter
        let latency: DurationHistogram

        func record(duration: Duration, isError: Bool) {
            self.count.increment()
            if isError { self.errors.increment() }
            self.latency.record(duration)
        }
    }

    /// The instruments of `procedure` of `program`, made on first use.
    func instruments(program: String, procedure: String) -> CallInstruments {
        let key = "\(program).\(procedure)"
        return self.calls.withLock { calls in
            if let existing = calls[key] { return existing }
            let labels = [("program", program), ("procedure", procedure)]
            let made = CallInstruments(
                count: self.registry.makeCounter(name: "strata_rpc_calls_total", labels: labels, help: "RPC calls by procedure"),
                errors: self.registry.makeCounter(name: "strata_rpc_errors_total", labels: labels, help: "Calls answered with an error status"),
                latency: self.registry.makeDurationHistogram(
                    name: "strata_rpc_duration_seconds", labels: labels, buckets: ServerMetrics.latencyBuckets,
                    help: "Time from decoded call to encoded reply"))
            calls[key] = made
            return made
        }
    }

    /// Records one call of `procedure` of `program`.
    public func recordCall(program: String, procedure: String, duration: Duration, isError: Bool) {
        self.instruments(program: program, procedure: procedure).record(duration: duration, isError: isError)
    }

    /// Reads the union's copy-up and whiteout totals from `read` at every scrape.
    public func observeUnion(_ read: @escaping @Sendable () -> UnionStatistics) {
        self.unionSource.withLock { $0.read = read }
    }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> [UInt8] {
        self.unionSource.withLock { source in
            guard let read = source.read else { return }
            let now = read()
            let before = source.exported
            if now.copyUps > before.copyUps { self.copyUps.increment(by: Int64(now.copyUps - before.copyUps)) }
            if now.copyUpBytes > before.copyUpBytes { self.copyUpBytes.increment(by: Int64(now.copyUpBytes - before.copyUpBytes)) }
            if now.whiteoutsCreated > before.whiteoutsCreated {
                self.whiteoutsCreated.increment(by: Int64(now.whiteoutsCreated - before.whiteoutsCreated))
            }
            source.exported = UnionStatistics(
                copyUps: max(now.copyUps, before.copyUps), copyUpBytes: max(now.copyUpBytes, before.copyUpBytes),
                whiteoutsCreated: max(now.whiteoutsCreated, before.whiteoutsCreated))
        }
        return self.registry.emitToBuffer()
    }
}

/// Wraps an RPC program to count its calls, errors and latency per procedure. For programs
/// whose every result starts with a status word (NFSv3: nfsstat3, MOUNT v3 MNT: mountstat3),
/// a non-zero first word counts as an error.
struct MeteredProgram: RPCProgramHandler {
    let inner: any RPCProgramHandler
    let metrics: ServerMetrics
    let name: String
    let resultsStartWithStatus: @Sendable (UInt32) -> Bool
    /// The instruments of each known procedure, by number, made once: a call records with no
    /// lock and no string built.
    let known: [ServerMetrics.CallInstruments]

    init(
        inner: any RPCProgramHandler, metrics: ServerMetrics, name: String, procedureNames: [UInt32: String],
        resultsStartWithStatus: @escaping @Sendable (UInt32) -> Bool
    ) {
        self.inner = inner
        self.metrics = metrics
        self.name = name
        self.resultsStartWithStatus = resultsStartWithStatus
        var known: [ServerMetrics.CallInstruments] = []
        var number: UInt32 = 0
        while let procedure = procedureNames[number] {
            known.append(metrics.instruments(program: name, procedure: procedure))
            number += 1
        }
        self.known = known
    }

    var program: UInt32 { self.inner.program }
    var versions: ClosedRange<UInt32> { self.inner.versions }

    func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool {
        self.inner.isNonIdempotent(version: version, procedure: procedure)
    }

    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        let start = ContinuousClock.now
        let reply = self.inner.handle(call, arguments: &arguments)
        let isError: Bool
        switch reply {
        case .success(let body):
            isError = self.resultsStartWithStatus(call.procedure) && (body.getInteger(at: body.readerIndex, as: UInt32.self) ?? 0) != 0
        case .drop:
            isError = false
        default:
            isError = true
        }
        let duration = ContinuousClock.now - start
        if Int(call.procedure) < self.known.count {
            self.known[Int(call.procedure)].record(duration: duration, isError: isError)
        } else {
            self.metrics.recordCall(program: self.name, procedure: "proc\(call.procedure)", duration: duration, isError: isError)
        }
        return reply
    }
}
