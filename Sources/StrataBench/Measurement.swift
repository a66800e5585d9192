import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds of the monotonic clock (vDSO: no system call).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// CPU time of this process (all threads), in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

/// CPU time of another process (utime + stime of /proc/PID/stat), in seconds; nil when it
/// cannot be read (the process is gone).
func otherProcessCPUSeconds(pid: Int32) -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return nil }
    // After "pid (comm)": field 3 is state; utime and stime are fields 14 and 15.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Busy and total jiffies of the whole machine (first line of /proc/stat).
func hostCPUJiffies() -> (busy: Double, total: Double)? {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
        let line = text.split(separator: "\n").first
    else { return nil }
    let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard values.count >= 5 else { return nil }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let idle = values[3] + values[4]
    let total = values.prefix(8).reduce(0, +)
    return (total - idle, total)
}

/// CPU readings at the start of a phase; `finish` turns them into percentages.
struct CPUSample {
    var wall: UInt64
    var client: Double
    var server: Double?
    var host: (busy: Double, total: Double)?
    let serverPID: Int32?

    static func take(serverPID: Int32?) -> CPUSample {
        CPUSample(
            wall: monotonicNanoseconds(), client: processCPUSeconds(),
            server: serverPID.flatMap { otherProcessCPUSeconds(pid: $0) }, host: hostCPUJiffies(), serverPID: serverPID)
    }
}

/// The figures of one timed phase.
struct PhaseReport: Sendable {
    var workload: String
    var phase: String
    var ops: Int
    var units: Double
    var unit: String
    /// From units (bytes, entries, operations) to what `rate` counts (MiB for bytes).
    var unitScale: Double = 1
    var seconds: Double
    var p50: Double
    var p99: Double
    var max: Double
    var errors: Int
    var firstError: String?
    var qd: Int
    var connections: Int
    var clientCPUSeconds: Double
    var serverCPUSeconds: Double?
    var hostBusyPercent: Double?
    var extra: [(String, String)] = []

    var rate: Double { self.seconds > 0 ? self.units * self.unitScale / self.seconds : 0 }
    var clientPercent: Double { self.seconds > 0 ? 100 * self.clientCPUSeconds / self.seconds : 0 }
    var serverPercent: Double? { self.serverCPUSeconds.map { self.seconds > 0 ? 100 * $0 / self.seconds : 0 } }
    var clientMicrosecondsPerOp: Double { self.ops > 0 ? 1e6 * self.clientCPUSeconds / Double(self.ops) : 0 }
    var serverMicrosecondsPerOp: Double? {
        self.serverCPUSeconds.map { self.ops > 0 ? 1e6 * $0 / Double(self.ops) : 0 }
    }

    static func make(
        workload: String, phase: String, unit: String, start: CPUSample, latencies: [UInt64], units: Double,
        errors: Int,
        firstError: String?, qd: Int, connections: Int
    ) -> PhaseReport {
        let end = CPUSample.take(serverPID: start.serverPID)
        let seconds = Double(end.wall - start.wall) / 1e9
        let sorted = latencies.sorted()
        func percentile(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, Int((fraction * Double(sorted.count)).rounded(.up)) - 1)
            return Double(sorted[Swift.max(0, index)]) / 1000
        }
        var host: Double?
        if let before = start.host, let after = end.host, after.total > before.total {
            // Percent of one CPU, summed over CPUs (200 = two busy CPUs), as nfsbench reports.
            host =
                100 * (after.busy - before.busy) / (after.total - before.total)
                * Double(ProcessInfo.processInfo.activeProcessorCount)
        }
        var server: Double?
        if let before = start.server, let after = end.server { server = after - before }
        return PhaseReport(
            workload: workload, phase: phase, ops: latencies.count, units: units, unit: unit, seconds: seconds,
            p50: percentile(0.50), p99: percentile(0.99), max: Double(sorted.last ?? 0) / 1000, errors: errors,
            firstError: firstError, qd: qd, connections: connections, clientCPUSeconds: end.client - start.client,
            serverCPUSeconds: server, hostBusyPercent: host)
    }

    /// One line for people.
    var line: String {
        var text = pad(self.phase, 20) + pad("ops \(self.ops)", 12) + pad(String(format: "%.2f s", self.seconds), 10)
        text += pad(String(format: "%.0f %@", self.rate, self.unit), 16)
        text += String(
            format: "p50 %.0f µs  p99 %.0f µs  max %.0f µs  errors %d", self.p50, self.p99, self.max, self.errors)
        text += String(format: "  client %.0f%% %.1f µs/op", self.clientPercent, self.clientMicrosecondsPerOp)
        if let server = self.serverPercent, let perOp = self.serverMicrosecondsPerOp {
            text += String(format: "  server %.0f%% %.1f µs/op", server, perOp)
        }
        if let host = self.hostBusyPercent { text += String(format: "  host %.0f%%", host) }
        for (key, value) in self.extra { text += "  \(key) \(value)" }
        return text
    }

    /// One JSON object (one line).
    var json: String {
        var fields: [(String, String)] = [
            ("workload", quoted(self.workload)), ("phase", quoted(self.phase)), ("ops", "\(self.ops)"),
            ("seconds", number(self.seconds, 4)), ("rate", number(self.rate, 1)), ("unit", quoted(self.unit)),
            ("units", number(self.units, 0)),
            ("p50_us", number(self.p50, 1)), ("p99_us", number(self.p99, 1)), ("max_us", number(self.max, 1)),
            ("qd", "\(self.qd)"), ("conns", "\(self.connections)"), ("errors", "\(self.errors)"),
            ("client_cpu_pct", number(self.clientPercent, 1)),
            ("client_us_per_op", number(self.clientMicrosecondsPerOp, 2)),
        ]
        if let server = self.serverPercent, let perOp = self.serverMicrosecondsPerOp {
            fields.append(("server_cpu_pct", number(server, 1)))
            fields.append(("server_us_per_op", number(perOp, 2)))
        }
        if let host = self.hostBusyPercent { fields.append(("host_cpu_pct", number(host, 1))) }
        fields.append(("ncpu", "\(ProcessInfo.processInfo.activeProcessorCount)"))
        if let error = self.firstError { fields.append(("first_error", quoted(error))) }
        fields += self.extra.map { ($0.0, Double($0.1) != nil ? $0.1 : quoted($0.1)) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

private func number(_ value: Double, _ digits: Int) -> String {
    value.isFinite ? String(format: "%.\(digits)f", value) : "null"
}

func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
