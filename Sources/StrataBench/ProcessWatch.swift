import Basics
import Foundation

/// CPU time and memory of a process, read from /proc (Linux): the server a benchmark measures
/// (`--watch-pid`), or the load generator itself.
public struct ProcessSample: Sendable, Equatable {
    /// User + system CPU seconds since the process started.
    public var cpuSeconds: Double
    /// Resident set size, bytes.
    public var residentBytes: Int

    /// Reads /proc/PID/stat and /proc/PID/status; nil if the process is gone.
    public static func read(pid: Int32) -> ProcessSample? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after "comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var resident = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            resident = (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return ProcessSample(cpuSeconds: (user + system) / ticks, residentBytes: resident)
    }

    /// This process.
    public static func ownProcess() -> ProcessSample {
        Self.read(pid: getpid()) ?? ProcessSample(cpuSeconds: 0, residentBytes: 0)
    }
}

/// The whole host's CPU time (first line of /proc/stat): what a storm cost besides the server's own CPU, the kernel's
/// writeback threads (the `syncfs` of a durable server's batches is written back by them, outside its CPU time),
/// softirqs (loopback) and the load generator, and whatever else the host ran meanwhile.
public struct HostSample: Sendable, Equatable {
    /// Seconds the CPUs were busy (user, nice, system, irq, softirq), summed over CPUs.
    public var busySeconds: Double
    /// Seconds that passed on the CPUs (busy, idle, iowait and steal), summed over CPUs.
    public var totalSeconds: Double

    /// Parses the "cpu " line of /proc/stat (clock ticks of `ticksPerSecond`); nil if it is not there or malformed.
    public static func parse(_ stat: String, ticksPerSecond: Double) -> HostSample? {
        guard let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let ticks = line.split(separator: " ").dropFirst().map { Double($0) }
        guard ticks.count >= 8, ticks.prefix(8).allSatisfy({ $0 != nil }), ticksPerSecond > 0 else { return nil }
        let value = ticks.prefix(8).map { $0! }
        // user nice system idle iowait irq softirq steal
        let busy = value[0] + value[1] + value[2] + value[5] + value[6]
        return HostSample(busySeconds: busy / ticksPerSecond, totalSeconds: value.reduce(0, +) / ticksPerSecond)
    }

    /// The host now; nil where /proc/stat cannot be read.
    public static func read() -> HostSample? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        return Self.parse(stat, ticksPerSecond: Double(sysconf(Int32(_SC_CLK_TCK))))
    }
}

/// Samples a process every `interval` until stopped: its CPU over the watch and its peak RSS. `@unchecked Sendable`:
/// `task` is set once, in `init`, before anything else can see the watch; the samples are behind their lock.
public final class ProcessWatch: @unchecked Sendable {
    struct Samples {
        var first: ProcessSample?
        var last: ProcessSample?
        var peakResident = 0
    }

    let pid: Int32
    let samples = Locked(Samples())
    var task: Task<Void, Never>?

    public init(pid: Int32, interval: Duration = .milliseconds(50)) {
        self.pid = pid
        self.record()
        self.task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                self?.record()
            }
        }
    }

    func record() {
        guard let sample = ProcessSample.read(pid: self.pid) else { return }
        self.samples.withLock { samples in
            if samples.first == nil { samples.first = sample }
            samples.last = sample
            samples.peakResident = max(samples.peakResident, sample.residentBytes)
        }
    }

    /// Stops sampling; CPU seconds used during the watch, peak and last RSS.
    public func stop() -> (cpuSeconds: Double, peakResidentBytes: Int, lastResidentBytes: Int) {
        self.task?.cancel()
        self.record()
        return self.samples.withLock { samples in
            let cpu = (samples.last?.cpuSeconds ?? 0) - (samples.first?.cpuSeconds ?? 0)
            return (cpu, samples.peakResident, samples.last?.residentBytes ?? 0)
        }
    }
}
