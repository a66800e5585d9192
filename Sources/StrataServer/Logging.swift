import Basics
import Foundation
import Logging
import Synchronization

/// What the server's log handler reads on every line: the level (`log_level`, changed by a
/// reload) and the format (`log_format`). One instance per process, shared by every logger.
public final class LogControl: Sendable {
    /// Index of the level in `Logger.Level.allCases`: every call reads it (an atomic, as a
    /// lock here was taken by all pool threads at once).
    private let levelIndex: Atomic<Int>
    private let state: Locked<LogFormat>
    /// True when stderr is the systemd journal's stream: lines then start with a syslog
    /// priority (`<6>`) and carry no timestamp (the journal stamps them).
    public let isJournal: Bool

    public init(level: Logger.Level, format: LogFormat, isJournal: Bool = LogControl.stderrIsJournal()) {
        self.levelIndex = Atomic(Logger.Level.allCases.firstIndex(of: level) ?? 0)
        self.state = Locked(format)
        self.isJournal = isJournal
    }

    public var level: Logger.Level {
        get { Logger.Level.allCases[self.levelIndex.load(ordering: .relaxed)] }
        set { self.levelIndex.store(Logger.Level.allCases.firstIndex(of: newValue) ?? 0, ordering: .relaxed) }
    }

    public var format: LogFormat {
        get { self.state.withLock { $0 } }
        set { self.state.withLock { $0 = newValue } }
    }

    /// systemd sets `JOURNAL_STREAM=DEV:INODE` for a service whose stderr is the journal; the
    /// variable is inherited by children, so it counts only if stderr is still that stream.
    public static func stderrIsJournal(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}

/// Writes one line a message to stderr, as text or JSON, with a syslog priority prefix under
/// systemd. Metadata values are escaped: they may carry names a client sent.
public struct StrataLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    let control: LogControl
    let label: String

    public init(label: String, control: LogControl) {
        self.label = label
        self.control = control
    }

    /// The process-wide level; setting it changes every logger (a reload does that).
    public var logLevel: Logger.Level {
        get { self.control.level }
        set { self.control.level = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let explicit = event.metadata { merged.merge(explicit) { $1 } }
        if let error = event.error { merged["error"] = "\(error)" }
        let text = StrataLogHandler.format(
            level: event.level, message: "\(event.message)", metadata: merged, format: self.control.format,
            isJournal: self.control.isJournal,
            date: Date())
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        // One write a line, so lines of concurrent threads never interleave.
        _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// The syslog priority of `level` (sd-daemon(3): `<7>` debug … `<2>` critical).
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func format(
        level: Logger.Level, message: String, metadata: Logger.Metadata, format: LogFormat, isJournal: Bool, date: Date
    ) -> String {
        let prefix = isJournal ? "<\(priority(level))>" : ""
        let sorted = metadata.sorted { $0.key < $1.key }
        switch format {
        case .text:
            var line = prefix
            if !isJournal { line += timestamp(date) + " " }
            line += "\(level) \(escapedText(message))"
            for (key, value) in sorted { line += " \(key)=\(quotedIfNeeded("\(value)"))" }
            return line
        case .json:
            var fields = [
                "\"time\":\(jsonString(timestamp(date)))", "\"level\":\(jsonString(level.rawValue))",
                "\"message\":\(jsonString(message))",
            ]
            for (key, value) in sorted where !["time", "level", "message"].contains(key) {
                fields.append("\(jsonString(key)):\(jsonString("\(value)"))")
            }
            return prefix + "{" + fields.joined(separator: ",") + "}"
        }
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-12-02T03:55:16.736Z`. Built by hand: a
    /// date formatter per line costs more than the rest of the line.
    static func timestamp(_ date: Date) -> String {
        let total = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(total / 1000)
        let milliseconds = Int(total % 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis =
            milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        return
            "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millis)Z"
    }

    /// Control characters as escapes, so a name with a newline cannot forge a log line.
    static func escapedText(_ text: String) -> String {
        Self.escaped(text) { String(format: "\\x%02x", $0) }
    }

    static func quotedIfNeeded(_ value: String) -> String {
        let plain =
            !value.isEmpty
            && !value.unicodeScalars.contains {
                $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7f
            }
        guard !plain else { return value }
        return "\"" + Self.escaped(value, quotes: true) { String(format: "\\x%02x", $0) } + "\""
    }

    static func jsonString(_ text: String) -> String {
        "\"" + Self.escaped(text, quotes: true) { String(format: "\\u%04x", $0) } + "\""
    }

    /// `text` with `\n`, `\r` and `\t` escaped, other control characters as `control` spells them, and with `quotes`
    /// a double quote and a backslash escaped too.
    static func escaped(_ text: String, quotes: Bool = false, control: (UInt32) -> String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"" where quotes: result += "\\\""
            case "\\" where quotes: result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f: result += control(scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
