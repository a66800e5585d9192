import NIOCore
import TestSupport
import Testing

@testable import XDR

/// Truncated, oversized and garbage input: decoders throw `XDRError`, never trap.
@Suite struct XDRMalformedInputTests {
    @Test func everyTruncationOfAValueThrowsTruncated() throws {
        let seed = SplitMix64.printedSeed("XDRMalformedInputTests truncation")
        var rng = SplitMix64(seed: seed)
        for _ in 0..<50 {
            let encoded = xdrEncoded(Sample.random(using: &rng))
            for cut in 0..<encoded.readableBytes {
                var prefix = encoded.getSlice(at: encoded.readerIndex, length: cut) ?? ByteBuffer()
                do {
                    _ = try Sample(xdr: &prefix)
                    Issue.record("decoded a \(cut)-byte prefix of \(encoded.readableBytes) bytes (seed \(seed))")
                } catch {
                    guard case .truncated = error else {
                        Issue.record("prefix of \(cut) bytes threw \(error), expected truncated (seed \(seed))")
                        continue
                    }
                }
            }
        }
    }

    @Test func opaqueLongerThanTheLimitThrowsBeforeReading() {
        var buffer = ByteBuffer()
        buffer.writeXDRVariableOpaque([UInt8](repeating: 1, count: 65))
        #expect(throws: XDRError.lengthTooLarge(length: 65, limit: 64)) {
            _ = try buffer.readXDRVariableOpaque(maxLength: 64)
        }
    }

    @Test func hugeLengthsThrowWithoutAllocating() {
        // 4 GiB announced, 8 bytes present: must fail at once, before any allocation.
        var buffer = ByteBuffer()
        buffer.writeXDR(UInt32.max)
        buffer.writeXDR(UInt32(0))
        var copy = buffer
        #expect(throws: XDRError.self) { _ = try copy.readXDRVariableOpaque(maxLength: Int(UInt32.max)) }
        copy = buffer
        #expect(throws: XDRError.self) { _ = try copy.readXDRVariableOpaqueSlice(maxLength: Int.max) }
        copy = buffer
        #expect(throws: XDRError.self) {
            _ = try copy.readXDRArray(maxCount: Int.max) { (b) throws(XDRError) in try b.readXDRUInt64() }
        }
        copy = buffer
        #expect(throws: XDRError.self) {
            // Even zero-byte elements are counted as at least one byte against the buffer.
            _ = try copy.readXDRArray(maxCount: Int.max, minimumElementBytes: 0) { (_) throws(XDRError) in 0 }
        }
    }

    @Test func arrayCountIsBoundedByTheBytesPresent() {
        var buffer = ByteBuffer()
        buffer.writeXDR(UInt32(1000))
        buffer.writeXDR(UInt32(1))
        buffer.writeXDR(UInt32(2))
        #expect(throws: XDRError.truncated(needed: 4000, available: 8)) {
            _ = try buffer.readXDRArray(maxCount: 5000) { (b) throws(XDRError) in try b.readXDRUInt32() }
        }
    }

    @Test func arrayLongerThanTheLimitThrows() {
        var buffer = ByteBuffer()
        buffer.writeXDRArray([UInt32](repeating: 7, count: 17)) { $0.writeXDR($1) }
        #expect(throws: XDRError.lengthTooLarge(length: 17, limit: 16)) {
            _ = try buffer.readXDRArray(maxCount: 16) { (b) throws(XDRError) in try b.readXDRUInt32() }
        }
    }

    @Test(arguments: [UInt32(2), 3, 0x100, .max])
    func boolOtherThanZeroOrOneThrows(value: UInt32) {
        var buffer = ByteBuffer()
        buffer.writeXDR(value)
        #expect(throws: XDRError.invalidBool(value)) { _ = try buffer.readXDRBool() }
    }

    @Test(arguments: [1, 2, 3])
    func nonZeroPaddingThrows(length: Int) {
        var buffer = ByteBuffer()
        buffer.writeXDR(UInt32(length))
        buffer.writeRepeatingByte(0x55, count: length)
        buffer.writeRepeatingByte(0x01, count: xdrPadding(length))
        #expect(throws: XDRError.nonZeroPadding) { _ = try buffer.readXDRVariableOpaque(maxLength: 10) }
    }

    @Test func missingPaddingIsTruncation() {
        var buffer = ByteBuffer()
        buffer.writeXDR(UInt32(3))
        buffer.writeBytes([1, 2, 3])
        #expect(throws: XDRError.self) { _ = try buffer.readXDRVariableOpaque(maxLength: 10) }
    }

    @Test func emptyBufferThrowsForEveryPrimitive() {
        var buffer = ByteBuffer()
        #expect(throws: XDRError.truncated(needed: 4, available: 0)) { _ = try buffer.readXDRUInt32() }
        #expect(throws: XDRError.truncated(needed: 4, available: 0)) { _ = try buffer.readXDRInt32() }
        #expect(throws: XDRError.truncated(needed: 8, available: 0)) { _ = try buffer.readXDRUInt64() }
        #expect(throws: XDRError.truncated(needed: 8, available: 0)) { _ = try buffer.readXDRInt64() }
        #expect(throws: XDRError.self) { _ = try buffer.readXDRBool() }
        #expect(throws: XDRError.self) { _ = try buffer.readXDRFixedOpaque(count: 1) }
        #expect(throws: XDRError.self) { _ = try buffer.readXDRString(maxLength: 1) }
        #expect(throws: XDRError.self) {
            _ = try buffer.readXDROptional { (b) throws(XDRError) in try b.readXDRUInt32() }
        }
    }

    @Test func randomGarbageNeverTraps() {
        let seed = SplitMix64.printedSeed("XDRMalformedInputTests garbage")
        var rng = SplitMix64(seed: seed)
        var decodedCount = 0
        for _ in 0..<5000 {
            let length = Int.random(in: 0...200, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Make small lengths and bools likely, so decoding gets past the first fields.
            for index in stride(from: 0, to: bytes.count, by: 4) where Bool.random(using: &rng) {
                bytes[index] = 0
                if index + 1 < bytes.count { bytes[index + 1] = 0 }
                if index + 2 < bytes.count { bytes[index + 2] = 0 }
                if index + 3 < bytes.count { bytes[index + 3] &= 0x0f }
            }
            var buffer = ByteBuffer(bytes: bytes)
            if (try? Sample(xdr: &buffer)) != nil { decodedCount += 1 }
        }
        print("XDRMalformedInputTests garbage decoded \(decodedCount) of 5000")
    }

    @Test func errorsDescribeThemselves() {
        #expect("\(XDRError.lengthTooLarge(length: 9, limit: 8))".contains("limit of 8"))
        #expect("\(XDRError.truncated(needed: 4, available: 1))".contains("needed 4"))
        #expect("\(XDRError.invalidEnum(type: "nfsstat3", value: 9))".contains("nfsstat3"))
    }
}
