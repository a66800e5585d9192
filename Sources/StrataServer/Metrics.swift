import Basics
import Foundation
import NIOCore
import Prometheus
import SunRPC
import Union

/// The server's Prometheus metrics. One registry per server (not the process-global
/// MetricsSystem), so several servers in one test process do not share counts.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let calls = Locked<[String: (count: Counter, latency: DurationHistogram)]>([:])
    /// Error counters by program, procedure and status name (`NFS3ERR_NOENT`, `AUTH_TOOWEAK`).
    let errors = Locked<[String: Counter]>([:])
    /// Calls and error replies by export path.
    let exportCounters = Locked<[String: (calls: Counter, errors: Counter)]>([:])
    public let bytesRead: Counter
    public let bytesWritten: Counter
    public let copyUps: Counter
    public let copyUpBytes: Counter
    public let whiteoutsCreated: Counter
    public let clientsMounted: Gauge
    /// Read-only calls the caches could not answer, answered on the event loop or refused there (`InlineMisses`).
    let inlineMissesAnswered: Counter
    let inlineMissesRefused: Counter
    let inlineMissPauses: Counter
    /// `ChangeStatistics`, exported as counters (`changeCounters`) from the totals `changeSource` reads at each scrape.
    let changeCounters: ChangeCounters
    let changeSource = Locked<(@Sendable () -> ChangeStatistics)?>(nil)
    let changesExported = Locked(ChangeStatistics())
    /// Where the union's counters come from (`unionSource`), and what was last exported of them (`unionExported`): the
    /// union keeps totals, Prometheus counters only go up, so each scrape adds the difference.
    let unionSource = Locked<(@Sendable () -> UnionStatistics)?>(nil)
    let unionExported = Locked(UnionStatistics(copyUps: 0, copyUpBytes: 0, whiteoutsCreated: 0))

    static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    public init() {
        self.bytesRead = self.registry.counter("strata_nfs_read_bytes_total", help: "Bytes returned by NFS READ")
        self.bytesWritten = self.registry.counter("strata_nfs_written_bytes_total", help: "Bytes accepted by NFS WRITE")
        self.copyUps = self.registry.counter("strata_copy_ups_total", help: "Objects copied up from a lower layer")
        self.copyUpBytes = self.registry.counter(
            "strata_copy_up_bytes_total", help: "Bytes copied up from lower layers")
        self.whiteoutsCreated = self.registry.counter(
            "strata_whiteouts_created_total", help: "Whiteouts recorded in sidecars")
        self.clientsMounted = self.registry.gauge("strata_clients_mounted", help: "Entries in the mount table")
        self.changeCounters = ChangeCounters(self.registry)
        let missesHelp =
            "Read-only NFS calls the caches could not answer, tried on the event loop: answered there, or"
            + " refused by a step that would have waited (then answered by a pool thread)"
        self.inlineMissesAnswered = self.registry.counter(
            "strata_nfs_inline_misses_total", labels: [("outcome", "answered")], help: missesHelp)
        self.inlineMissesRefused = self.registry.counter(
            "strata_nfs_inline_misses_total", labels: [("outcome", "refused")], help: missesHelp)
        self.inlineMissPauses = self.registry.counter(
            "strata_nfs_inline_miss_pauses_total",
            help:
                "Pauses of those answers because one read the disk (a cold cache): the pool's threads answer them meanwhile"
        )
        self.registry.gauge(
            "strata_build_info", labels: [("version", StrataBuild.version), ("swift", StrataBuild.swiftVersion)],
            help: "The running Strata version (always 1)"
        ).set(to: 1)
    }

    /// The call counter and latency histogram of `procedure` of `program`, made on first use.
    func callInstruments(program: String, procedure: String) -> (count: Counter, latency: DurationHistogram) {
        let key = "\(program).\(procedure)"
        return self.calls.withLock { calls in
            if let existing = calls[key] { return existing }
            let labels = [("program", program), ("procedure", procedure)]
            let made = (
                count: self.registry.counter("strata_rpc_calls_total", labels: labels, help: "RPC calls by procedure"),
                latency: self.registry.durationHistogram(
                    "strata_rpc_duration_seconds", labels: labels, buckets: ServerMetrics.latencyBuckets,
                    help: "Time from decoded call to encoded reply")
            )
            calls[key] = made
            return made
        }
    }

    /// Records one call of `procedure` of `program`: `errorStatus` names the error it was
    /// answered with (nil for success), `export` the export its file handle named.
    public func recordCall(
        program: String, procedure: String, duration: Duration, errorStatus: String?, export: String? = nil
    ) {
        self.record(
            self.callInstruments(program: program, procedure: procedure), program: program, procedure: procedure,
            duration: duration, errorStatus: errorStatus, export: export)
    }

    /// Records one call with its procedure's instruments already at hand (`MeteredProgram`
    /// makes them once): a successful call takes no lock beyond its export's counters.
    func record(
        _ instruments: (count: Counter, latency: DurationHistogram), program: String, procedure: String,
        duration: Duration, errorStatus: String?, export: String?
    ) {
        instruments.count.increment()
        instruments.latency.record(duration)
        if let errorStatus {
            let counter = self.errors.withLock { errors in
                let errorKey = "\(program).\(procedure).\(errorStatus)"
                if let existing = errors[errorKey] { return existing }
                let made = self.registry.counter(
                    "strata_rpc_errors_total",
                    labels: [("program", program), ("procedure", procedure), ("status", errorStatus)],
                    help: "Calls answered with an error status, by status")
                errors[errorKey] = made
                return made
            }
            counter.increment()
        }
        if let export {
            let counters = self.exportCounters.withLock { counters in
                if let existing = counters[export] { return existing }
                let labels = [("export", export)]
                let made = (
                    calls: self.registry.counter(
                        "strata_export_calls_total", labels: labels,
                        help: "Calls naming the export: NFS calls by their file handle, MNT and UMNT by their path"),
                    errors: self.registry.counter(
                        "strata_export_errors_total", labels: labels,
                        help: "Calls naming the export that were answered with an error")
                )
                counters[export] = made
                return made
            }
            counters.calls.increment()
            if errorStatus != nil { counters.errors.increment() }
        }
    }

    /// Reads the union's copy-up and whiteout totals from `read` at every scrape.
    public func observeUnion(_ read: @escaping @Sendable () -> UnionStatistics) {
        self.unionSource.withLock { $0 = read }
    }

    /// Reads the namespaces' change totals (lock waits, batches, flushes) from `read` at every scrape.
    public func observeChanges(_ read: @escaping @Sendable () -> ChangeStatistics) {
        self.changeSource.withLock { $0 = read }
    }

    /// Text exposition of the image versions (`ExportRegistry.imageMetrics`), read at every scrape.
    let imageSource = Locked<(@Sendable () -> String)?>(nil)

    public func observeImages(_ read: @escaping @Sendable () -> String) {
        self.imageSource.withLock { $0 = read }
    }

    /// Adds to the counters what the union's totals `now` gained since `exported`, which becomes `now`.
    private func export(_ now: UnionStatistics, after before: inout UnionStatistics) {
        if now.copyUps > before.copyUps { self.copyUps.increment(by: Int64(now.copyUps - before.copyUps)) }
        if now.copyUpBytes > before.copyUpBytes {
            self.copyUpBytes.increment(by: Int64(now.copyUpBytes - before.copyUpBytes))
        }
        if now.whiteoutsCreated > before.whiteoutsCreated {
            self.whiteoutsCreated.increment(by: Int64(now.whiteoutsCreated - before.whiteoutsCreated))
        }
        before = UnionStatistics(
            copyUps: max(now.copyUps, before.copyUps), copyUpBytes: max(now.copyUpBytes, before.copyUpBytes),
            whiteoutsCreated: max(now.whiteoutsCreated, before.whiteoutsCreated))
    }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> [UInt8] {
        if let read = self.unionSource.current {
            let now = read()
            self.unionExported.withLock { exported in self.export(now, after: &exported) }
        }
        if let read = self.changeSource.current {
            let now = read()
            self.changesExported.withLock { exported in self.changeCounters.export(now, after: &exported) }
        }
        let images = self.imageSource.current?() ?? ""
        return self.registry.emitToBuffer() + Array(images.utf8) + Array(ProcessMetrics.exposition().utf8)
    }
}

/// The counters of `ChangeStatistics`: where namespace changes spend their time. Divided, they give the mean wait
/// for the namespace write lock and hold of it per change, changes per group-commit flush, and the mean flush.
struct ChangeCounters: Sendable {
    let changes: Counter
    let lockWaitSeconds: Counter
    let lockHeldSeconds: Counter
    let flushes: Counter
    let flushedChanges: Counter
    let flushSeconds: Counter
    let flushSyncSeconds: Counter
    let flushGatherSeconds: Counter

    init(_ registry: PrometheusCollectorRegistry) {
        self.changes = registry.counter(
            "strata_namespace_changes_total", help: "Namespace changes run under a namespace's write lock")
        self.lockWaitSeconds = registry.counter(
            "strata_namespace_change_lock_wait_seconds_total",
            help: "Time namespace changes waited for their namespace's write lock")
        self.lockHeldSeconds = registry.counter(
            "strata_namespace_change_lock_held_seconds_total",
            help: "Time namespace changes held their namespace's write lock")
        self.flushes = registry.counter(
            "strata_group_commit_flushes_total", help: "Group-commit flushes of upper layers (one transaction and sync)"
        )
        self.flushedChanges = registry.counter(
            "strata_group_commit_changes_total", help: "Namespace changes made durable by group-commit flushes")
        self.flushSeconds = registry.counter(
            "strata_group_commit_flush_seconds_total", help: "Time group-commit flushes took")
        self.flushSyncSeconds = registry.counter(
            "strata_group_commit_sync_seconds_total",
            help: "Time group-commit flushes spent syncing after their sidecar transaction")
        self.flushGatherSeconds = registry.counter(
            "strata_group_commit_gather_seconds_total",
            help: "Time group-commit leaders waited for the changes running to join their flush")
    }

    /// Adds to the counters what the totals `now` gained since `before`, which becomes `now` (a total that went down,
    /// which closing a namespace cannot do, adds nothing). Times are counted in seconds.
    func export(_ now: ChangeStatistics, after before: inout ChangeStatistics) {
        let totals: [(Counter, WritableKeyPath<ChangeStatistics, UInt64>, isTime: Bool)] = [
            (self.changes, \.changes, false), (self.lockWaitSeconds, \.lockWaitNanoseconds, true),
            (self.lockHeldSeconds, \.lockHeldNanoseconds, true), (self.flushes, \.flushes, false),
            (self.flushedChanges, \.flushedChanges, false), (self.flushSeconds, \.flushNanoseconds, true),
            (self.flushSyncSeconds, \.flushSyncNanoseconds, true),
            (self.flushGatherSeconds, \.flushGatherNanoseconds, true),
        ]
        for (counter, total, isTime) in totals where now[keyPath: total] > before[keyPath: total] {
            let gained = now[keyPath: total] - before[keyPath: total]
            if isTime {
                counter.increment(by: Double(gained) / 1e9)
            } else {
                counter.increment(by: Int64(gained))
            }
            before[keyPath: total] = now[keyPath: total]
        }
    }
}

/// The process metrics Prometheus clients conventionally export (`process_*`), read from
/// /proc at each scrape.
enum ProcessMetrics {
    static func exposition() -> String {
        var lines: [String] = []
        func add(_ name: String, _ type: String, _ help: String, _ value: Double) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            lines.append("\(name) \(value)")
        }
        // /proc/self/stat: the fields after the command name (which may hold spaces) start at
        // field 3 (state); utime and stime are fields 14 and 15, vsize 23, rss 24.
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
            func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
            if let user = field(14), let system = field(15), ticks > 0 {
                add(
                    "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds",
                    (user + system) / ticks)
            }
            if let virtual = field(23) {
                add("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes", virtual)
            }
            if let resident = field(24) {
                add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes", resident * pageSize)
            }
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            // The listing itself holds one descriptor while it reads.
            add("process_open_fds", "gauge", "Open file descriptors", Double(max(0, descriptors.count - 1)))
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            add("process_max_fds", "gauge", "The limit on open file descriptors", Double(limit.rlim_cur))
        }
        return lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
    }
}

extension PrometheusCollectorRegistry {
    // The metric's whole name in one string (a descriptor splits it into namespace, subsystem,
    // name and unit; the names here are already whole).
    func counter(_ name: String, labels: [(String, String)] = [], help: String) -> Counter {
        self.makeCounter(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    func gauge(_ name: String, labels: [(String, String)] = [], help: String) -> Gauge {
        self.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    func durationHistogram(
        _ name: String, labels: [(String, String)], buckets: [Duration], help: String
    ) -> DurationHistogram {
        self.makeDurationHistogram(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels,
            buckets: buckets)
    }
}

/// Wraps an RPC program to count its calls, errors and latency per procedure. For programs
/// whose every result starts with a status word (NFSv3: nfsstat3, MOUNT v3 MNT: mountstat3),
/// a non-zero first word counts as an error.
struct MeteredProgram: ProgramWrapper {
    let inner: any RPCProgramHandler
    let metrics: ServerMetrics
    let name: String
    let procedureNames: [UInt32: String]
    let resultsStartWithStatus: @Sendable (UInt32) -> Bool
    /// The name of a non-zero status word (`NFS3ERR_NOENT`), for the `status` label.
    var statusName: @Sendable (UInt32) -> String = { "status\($0)" }
    /// The export a call's arguments name (from its first file handle), for per-export counts.
    var exportOfCall: (@Sendable (RPCCallContext, ByteBuffer) -> String?)? = nil
    /// The instruments of each procedure `procedureNames` names, by number, made once.
    let known: [UInt32: (count: Counter, latency: DurationHistogram)]

    init(
        inner: any RPCProgramHandler, metrics: ServerMetrics, name: String, procedureNames: [UInt32: String],
        resultsStartWithStatus: @escaping @Sendable (UInt32) -> Bool
    ) {
        self.inner = inner
        self.metrics = metrics
        self.name = name
        self.procedureNames = procedureNames
        self.resultsStartWithStatus = resultsStartWithStatus
        self.known = procedureNames.mapValues { metrics.callInstruments(program: name, procedure: $0) }
    }

    func mayAnswerInline(version: UInt32, procedure: UInt32) -> Bool {
        self.inner.mayAnswerInline(version: version, procedure: procedure)
    }

    func handleInline(_ call: RPCCallContext, arguments: ByteBuffer) -> RPCReply? {
        let start = ContinuousClock.now
        guard let reply = self.inner.handleInline(call, arguments: arguments) else { return nil }
        self.record(reply, of: call, arguments: arguments, since: start)
        return reply
    }

    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        let start = ContinuousClock.now
        let given = arguments
        let reply = self.inner.handle(call, arguments: &arguments)
        // A held reply (a change waiting for its flush) is counted when it leaves, as what it leaves as: its latency
        // includes the flush, and a failed flush counts as the error the client gets.
        RPCWorker.whenReplyLeaves(reply) { left in self.record(left, of: call, arguments: given, since: start) }
        return reply
    }

    private func record(
        _ reply: RPCReply, of call: RPCCallContext, arguments: ByteBuffer, since start: ContinuousClock.Instant
    ) {
        let export = self.exportOfCall?(call, arguments)
        let errorStatus: String?
        switch reply {
        case .success(let body):
            errorStatus = self.errorStatus(body, of: call)
        case .successFromFile(let results):
            errorStatus = self.errorStatus(results.head, of: call)
        case .drop:
            errorStatus = nil
        case .procedureUnavailable:
            errorStatus = "PROC_UNAVAIL"
        case .garbageArguments:
            errorStatus = "GARBAGE_ARGS"
        case .systemError:
            errorStatus = "SYSTEM_ERR"
        case .authError(let stat):
            errorStatus = MeteredProgram.authStatusName(stat)
        }
        let duration = ContinuousClock.now - start
        if let instruments = self.known[call.procedure], let procedure = self.procedureNames[call.procedure] {
            self.metrics.record(
                instruments, program: self.name, procedure: procedure, duration: duration, errorStatus: errorStatus,
                export: export)
        } else {
            self.metrics.recordCall(
                program: self.name, procedure: "proc\(call.procedure)", duration: duration, errorStatus: errorStatus,
                export: export)
        }
    }

    /// The status a procedure's results start with, if they do and it is not OK.
    private func errorStatus(_ body: ByteBuffer, of call: RPCCallContext) -> String? {
        let status =
            self.resultsStartWithStatus(call.procedure)
            ? body.getInteger(at: body.readerIndex, as: UInt32.self) ?? 0 : 0
        return status == 0 ? nil : self.statusName(status)
    }

    static func authStatusName(_ stat: AuthStat) -> String {
        switch stat {
        case .badCredential: return "AUTH_BADCRED"
        case .rejectedCredential: return "AUTH_REJECTEDCRED"
        case .badVerifier: return "AUTH_BADVERF"
        case .rejectedVerifier: return "AUTH_REJECTEDVERF"
        case .tooWeak: return "AUTH_TOOWEAK"
        default: return "AUTH_ERROR_\(stat.rawValue)"
        }
    }
}

/// Export paths by export identifier, for per-export counts: a call asks this small table
/// instead of the registry's state, which every call already takes for its admission. An entry
/// is asked again after a second, so a reload that gives an identifier to another export shows
/// in the labels within a second.
final class ExportPathCache: Sendable {
    let registry: ExportRegistry
    let paths = Locked<[UInt32: (path: String, until: ContinuousClock.Instant)]>([:])

    init(registry: ExportRegistry) {
        self.registry = registry
    }

    func path(_ exportID: UInt32) -> String? {
        let now = ContinuousClock.now
        if let known = self.paths.withLock({ $0[exportID] }), known.until > now { return known.path }
        guard let path = self.registry.exportPath(exportID: exportID) else {
            self.paths.withLock { $0[exportID] = nil }
            return nil
        }
        self.paths.withLock { $0[exportID] = (path, now + .seconds(1)) }
        return path
    }
}
