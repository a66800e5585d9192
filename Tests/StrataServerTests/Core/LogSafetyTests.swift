import Synchronization
import Testing

@testable import StrataServer

@Suite struct LoggableTests {
    @Test(arguments: [
        (Array("/srv/export".utf8), "/srv/export"),
        (Array("a\nforged line".utf8), "a\\nforged line"),
        ([0x61, 0x1b, 0x5b, 0x33, 0x31, 0x6d], "a\\x1b[31m"),
        ([0x00, 0x07, 0x0d, 0x09, 0x7f], "\\x00\\x07\\r\\t\\x7f"),
        (Array("back\\slash".utf8), "back\\\\slash"),
        ([0xc2, 0x9b], "\\x9b"),  // C1 CSI as UTF-8
        ([0xff, 0x41, 0xc3], "\\xffA\\xc3"),  // invalid UTF-8, a truncated sequence
        ([0xed, 0xa0, 0x80], "\\xed\\xa0\\x80"),  // a surrogate: not UTF-8
        (Array("e\u{301}té ☃".utf8), "e\u{301}té ☃"),
        (Array("a\u{2028}b\u{202E}c".utf8), "a\\u{2028}b\\u{202e}c"),
    ])
    func wireNamesAreEscaped(bytes: [UInt8], logged: String) {
        let text = loggable(bytes)
        #expect(text == logged)
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 || ($0.value >= 0x7f && $0.value < 0xa0) })
    }

    @Test func everyByteValueGivesPrintableText() {
        for byte in UInt8.min...UInt8.max {
            let text = loggable([byte, byte, 0x0a])
            #expect(
                !text.unicodeScalars.contains { $0.value < 0x20 || ($0.value >= 0x7f && $0.value < 0xa0) },
                "byte \(byte)")
        }
    }

    @Test func decodedTextIsEscapedToo() {
        #expect(loggable("x\u{1b}]0;title\u{07}") == "x\\x1b]0;title\\x07")
    }
}

@Suite struct LogRateLimiterTests {
    @Test func aBurstPassesThenTheRestIsCountedAndReported() {
        let clock = FakeClock()
        let limiter = LogRateLimiter(burst: 3, perSecond: 1, clock: { clock.now })
        #expect(limiter.admit("mnt") == 0)
        #expect(limiter.admit("mnt") == 0)
        #expect(limiter.admit("mnt") == 0)
        for _ in 0..<100 { #expect(limiter.admit("mnt") == nil) }
        #expect(limiter.admit("other") == 0, "kinds have their own bucket")
        clock.advance(1)
        #expect(limiter.admit("mnt") == 100, "the next line carries the count held back")
        #expect(limiter.admit("mnt") == nil)
        clock.advance(10)
        #expect(limiter.admit("mnt") == 1)
        #expect(limiter.admit("mnt") == 0)
        #expect(limiter.admit("mnt") == 0)
        #expect(limiter.admit("mnt") == nil, "the bucket holds at most the burst")
    }

    @Test func suppressedLinesAreCountedInTheMetric() {
        let clock = FakeClock()
        let limiter = LogRateLimiter(burst: 1, perSecond: 1, clock: { clock.now })
        let metrics = ServerMetrics()
        limiter.countSuppressed(in: metrics)
        for _ in 0..<5 { _ = limiter.admit("mnt_refused") }
        let text = String(decoding: metrics.registry.emitToBuffer(), as: UTF8.self)
        #expect(text.contains("strata_log_lines_suppressed_total{kind=\"mnt_refused\"} 4"), "\(text)")
    }
}
