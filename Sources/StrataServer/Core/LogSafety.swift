import Basics
import Prometheus

/// A name from the wire (MNT path, file name, machine name) as it may appear in a log line:
/// control characters (C0, DEL, C1), line and paragraph separators, bidirectional overrides and
/// bytes that are not UTF-8 are written as escapes (`\n`, `\x1b`, `\u{202E}`), and `\` as `\\`,
/// so a client can neither forge log lines nor send escape sequences to an operator's terminal.
public func loggable(_ bytes: [UInt8]) -> String {
    var result = ""
    result.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
        let lead = bytes[index]
        let length: Int
        switch lead {
        case 0x00...0x7f: length = 1
        case 0xc2...0xdf: length = 2
        case 0xe0...0xef: length = 3
        case 0xf0...0xf4: length = 4
        default: length = 0
        }
        if length > 0, index + length <= bytes.count,
            let text = String(validating: bytes[index..<(index + length)], as: UTF8.self),
            let scalar = text.unicodeScalars.first
        {
            appendLoggable(scalar, to: &result)
            index += length
        } else {
            result += "\\x" + hex(UInt32(lead), digits: 2)
            index += 1
        }
    }
    return result
}

/// `loggable` for text already decoded (its invalid bytes, if any, were replaced by U+FFFD).
public func loggable(_ text: String) -> String {
    var result = ""
    result.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars { appendLoggable(scalar, to: &result) }
    return result
}

private func appendLoggable(_ scalar: Unicode.Scalar, to result: inout String) {
    switch scalar.value {
    case 0x0a: result += "\\n"
    case 0x0d: result += "\\r"
    case 0x09: result += "\\t"
    case 0x5c: result += "\\\\"
    case 0x00...0x1f, 0x7f...0x9f: result += "\\x" + hex(scalar.value, digits: 2)
    // Line/paragraph separators and bidirectional embeddings, overrides and isolates: they
    // break lines or reorder what a terminal shows.
    case 0x2028, 0x2029, 0x202a...0x202e, 0x2066...0x2069:
        result += "\\u{" + hex(scalar.value, digits: 4) + "}"
    default: result.unicodeScalars.append(scalar)
    }
}

private func hex(_ value: UInt32, digits: Int) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: max(0, digits - text.count)) + text
}

/// Bounds log lines of one kind (e.g. refused mounts) that anyone can cause: a token bucket per
/// kind lets `burst` lines through, then `perSecond`; the lines it holds back are counted and
/// reported with the next line let through ("N more ... suppressed").
public final class LogRateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: Double
        var suppressed: Int
    }

    let buckets = Locked<[String: Bucket]>([:])
    let burst: Double
    let perSecond: Double
    let clock: @Sendable () -> Double
    /// Called with the kind of every line held back (the server counts them in a metric).
    let onSuppressed = Locked<(@Sendable (String) -> Void)?>(nil)

    /// Refusals of unauthenticated clients (MNT refused, file handle refused), process-wide.
    public static let refusals = LogRateLimiter()

    public init(burst: Int = 20, perSecond: Double = 2, clock: @escaping @Sendable () -> Double = monotonicSeconds) {
        self.burst = Double(max(1, burst))
        self.perSecond = perSecond
        self.clock = clock
    }

    /// Whether a line of `kind` may be logged now: nil if not (it is counted as suppressed),
    /// otherwise how many lines of that kind were suppressed since the last one logged.
    public func admit(_ kind: String) -> Int? {
        let now = self.clock()
        let admitted: Int? = self.buckets.withLock { buckets in
            var bucket = buckets[kind] ?? Bucket(tokens: self.burst, updated: now, suppressed: 0)
            bucket.tokens = min(self.burst, bucket.tokens + max(0, now - bucket.updated) * self.perSecond)
            bucket.updated = now
            defer { buckets[kind] = bucket }
            guard bucket.tokens >= 1 else {
                bucket.suppressed += 1
                return nil
            }
            bucket.tokens -= 1
            let suppressed = bucket.suppressed
            bucket.suppressed = 0
            return suppressed
        }
        if admitted == nil, let count = self.onSuppressed.current { count(kind) }
        return admitted
    }

    /// Counts the lines held back in `strata_log_lines_suppressed_total{kind}` of `metrics`.
    public func countSuppressed(in metrics: ServerMetrics) {
        self.onSuppressed.withLock {
            $0 = { kind in
                metrics.registry.counter(
                    "strata_log_lines_suppressed_total", labels: [("kind", kind)],
                    help: "Log lines held back by rate limiting, by kind"
                ).increment()
            }
        }
    }
}
