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

/// Samples a process every `interval` until stopped: its CPU over the watch and its peak RSS.
public final class ProcessWatch: @unchecked Sendable {
    let pid: Int32
    let lock = NSLock()
    var first: ProcessSample?
    var last: ProcessSample?
    var peakResident = 0
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
        self.lock.lock()
        defer { self.lock.unlock() }
        if self.first == nil { self.first = sample }
        self.last = sample
        self.peakResident = max(self.peakResident, sample.residentBytes)
    }

    /// Stops sampling; CPU seconds used during the watch, peak and last RSS.
    public func stop() -> (cpuSeconds: Double, peakResidentBytes: Int, lastResidentBytes: Int) {
        self.task?.cancel()
        self.record()
        self.lock.lock()
        defer { self.lock.unlock() }
        let cpu = (self.last?.cpuSeconds ?? 0) - (self.first?.cpuSeconds ?? 0)
        return (cpu, self.peakResident, self.last?.residentBytes ?? 0)
    }
}
