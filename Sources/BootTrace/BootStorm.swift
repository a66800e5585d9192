import Foundation
import NIOCore

/// A room of diskless clients powering on at once: `clients` replays of one boot script,
/// started together, each on its own connections (source address) and export.
public enum BootStorm {
    /// What the storm measured. Times in seconds, latencies in milliseconds.
    public struct Report: Sendable, Codable {
        public var clients: Int
        /// From the storm's start until the last client finished its boot.
        public var allBootedSeconds: Double
        public var bootP50Seconds: Double
        public var bootP99Seconds: Double
        public var bootMaxSeconds: Double
        public var callP50Milliseconds: Double
        public var callP99Milliseconds: Double
        public var calls: Int
        /// Calls that did not get the recorded answer, calls not sent, clients that could not
        /// connect (each counts once per call of its script).
        public var errors: Int
        public var bytesWritten: Int
        /// The first few errors, with client and script line.
        public var firstErrors: [String]
        /// Latency by operation (MNT, LOOKUP, WRITE...).
        public var operations: [String: OperationFigures]
        /// Where a boot's time goes: seconds of a client's boot (mean over the clients that booted) spent waiting
        /// for each operation, every instant of a boot counted once (see `BootTimeline`). "(client)" is time with
        /// no call outstanding: connecting, and the load generator itself. The values add up to the mean boot.
        public var bootSeconds: [String: Double] = [:]
    }

    public struct OperationFigures: Sendable, Codable {
        public var calls: Int
        public var p50Milliseconds: Double
        public var p99Milliseconds: Double
        public var totalMilliseconds: Double
    }

    /// A client's connections: NFS and MOUNT, both from the client's own source address.
    public typealias Connect =
        @Sendable (_ client: Int) async throws -> (nfs: any BootReplayTransport, mount: any BootReplayTransport)

    /// Runs the storm. `export(client)` is the export client `client` mounts (one export for
    /// all with per-client uppers, or one export per client); `tag(client)` marks its writes.
    public static func run(
        script: BootScript, clients: Int, export: @escaping @Sendable (Int) -> String,
        tag: @escaping @Sendable (Int) -> String = { "client-\($0)" },
        connect: @escaping Connect
    ) async -> Report {
        let start = ContinuousClock.now
        let results = await withTaskGroup(of: (Int, Result<BootReplayResult, any Error>, Duration).self) { group in
            for client in 0..<clients {
                group.addTask {
                    do {
                        let (nfs, mount) = try await connect(client)
                        let replay = BootReplay(script: script, export: export(client), clientTag: tag(client))
                        // On the NFS connection's event loop where it offers one: a call's answer then
                        // resumes the replay on the thread that read it.
                        let result = await withTaskExecutorPreference(nfs.taskExecutor) {
                            await replay.run(nfs: AnyTransport(nfs), mount: AnyTransport(mount))
                        }
                        return (client, .success(result), ContinuousClock.now - start)
                    } catch {
                        return (client, .failure(error), ContinuousClock.now - start)
                    }
                }
            }
            var all: [(Int, Result<BootReplayResult, any Error>, Duration)] = []
            for await result in group { all.append(result) }
            return all.sorted { $0.0 < $1.0 }
        }
        var boots: [Double] = []
        var latencies: [UInt64] = []
        var errors = 0
        var firstErrors: [String] = []
        var written = 0
        var calls = 0
        var last = 0.0
        var byOperation: [String: [UInt64]] = [:]
        var bootShares: [String: Double] = [:]
        for (client, result, finished) in results {
            last = max(last, finished.seconds)
            switch result {
            case .success(let replay):
                // A client's boot: from power-on (the storm's start) to its last answer, so
                // the time it queued to connect counts too.
                boots.append(finished.seconds)
                latencies += replay.latencies
                for (index, nanoseconds) in replay.callLatencies {
                    byOperation[script.calls[index].operation.keyword, default: []].append(nanoseconds)
                }
                let spans = replay.callSpans.map {
                    BootTimeline.Span(
                        operation: script.calls[$0.index].operation.keyword, sent: ($0.sent - start).seconds,
                        answered: ($0.answered - start).seconds)
                }
                for (operation, seconds) in BootTimeline.attribute(spans, until: finished.seconds) {
                    bootShares[operation, default: 0] += seconds
                }
                errors += replay.failures.count
                written += replay.bytesWritten
                calls += replay.calls
                for failure in replay.failures.prefix(3) where firstErrors.count < 10 {
                    firstErrors.append("client \(client): \(failure)")
                }
            case .failure(let error):
                errors += script.calls.count
                calls += script.calls.count
                if firstErrors.count < 10 { firstErrors.append("client \(client): could not connect: \(error)") }
            }
        }
        latencies.sort()
        boots.sort()
        var report = Report(
            clients: clients, allBootedSeconds: last,
            bootP50Seconds: percentile(boots, 0.50), bootP99Seconds: percentile(boots, 0.99),
            bootMaxSeconds: boots.last ?? 0,
            callP50Milliseconds: Double(percentile(latencies, 0.50)) / 1e6,
            callP99Milliseconds: Double(percentile(latencies, 0.99)) / 1e6,
            calls: calls, errors: errors, bytesWritten: written, firstErrors: firstErrors,
            operations: byOperation.mapValues { values in
                let sorted = values.sorted()
                return OperationFigures(
                    calls: sorted.count, p50Milliseconds: Double(percentile(sorted, 0.50)) / 1e6,
                    p99Milliseconds: Double(percentile(sorted, 0.99)) / 1e6,
                    totalMilliseconds: Double(sorted.reduce(0, +)) / 1e6)
            })
        if !boots.isEmpty { report.bootSeconds = bootShares.mapValues { $0 / Double(boots.count) } }
        return report
    }

    /// Nearest-rank percentile of sorted values (0 when empty).
    public static func percentile<T: Numeric>(_ sorted: [T], _ p: Double) -> T {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}

/// Where one client's boot went. Calls overlap (the recorded client had several outstanding), so their latencies do
/// not add up to the boot; here every instant of the boot, from the storm's start to its last answer, is given to
/// one operation: the one of the oldest call outstanding then (what the client was waiting on first), or
/// "(client)" when none was (connecting, or the load generator preparing the next call).
public enum BootTimeline {
    public struct Span: Sendable, Equatable {
        public var operation: String
        /// Seconds since the storm's start.
        public var sent: Double
        public var answered: Double
        public init(operation: String, sent: Double, answered: Double) {
            (self.operation, self.sent, self.answered) = (operation, sent, answered)
        }
    }

    public static let idle = "(client)"

    /// Seconds per operation; they add up to `until` (the boot's end, seconds since the storm's start).
    public static func attribute(_ spans: [Span], until end: Double) -> [String: Double] {
        var result: [String: Double] = [:]
        let ordered = spans.sorted { $0.sent < $1.sent }
        var points = Set(ordered.flatMap { [$0.sent, $0.answered] }.filter { $0 > 0 && $0 < end })
        points.insert(0)
        points.insert(end)
        let boundaries = points.sorted()
        // `first`: the oldest span not yet answered at the interval's start (spans answered earlier are behind it).
        var first = 0
        for (from, to) in zip(boundaries, boundaries.dropFirst()) {
            while first < ordered.count && ordered[first].answered <= from && ordered[first].sent <= from {
                first += 1
            }
            var owner = Self.idle
            for span in ordered[first...] {
                if span.sent > from { break }
                if span.answered >= to {
                    owner = span.operation
                    break
                }
            }
            result[owner, default: 0] += to - from
        }
        return result
    }
}

/// An existential transport passed where a generic one is expected.
struct AnyTransport: BootReplayTransport {
    let inner: any BootReplayTransport
    init(_ inner: any BootReplayTransport) { self.inner = inner }
    var taskExecutor: (any TaskExecutor)? { self.inner.taskExecutor }
    func call(program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer) async throws -> ByteBuffer {
        try await self.inner.call(program: program, version: version, procedure: procedure, arguments: arguments)
    }
}

extension Duration {
    var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}
