import NIOCore
import TestSupport
import Testing

@testable import XDR

/// A composite value exercising every XDR coding the module offers.
struct Sample: XDRCodable, Equatable {
    var word: UInt32
    var signed: Int32
    var hyper: UInt64
    var signedHyper: Int64
    var flag: Bool
    var fixed: [UInt8]  // always 7 bytes
    var opaque: [UInt8]
    var name: String
    var list: [UInt32]
    var maybe: UInt64?

    static let fixedBytes = 7
    static let maxOpaque = 64
    static let maxName = 32
    static let maxList = 16

    init(
        word: UInt32,
        signed: Int32,
        hyper: UInt64,
        signedHyper: Int64,
        flag: Bool,
        fixed: [UInt8],
        opaque: [UInt8],
        name: String,
        list: [UInt32],
        maybe: UInt64?
    ) {
        self.word = word
        self.signed = signed
        self.hyper = hyper
        self.signedHyper = signedHyper
        self.flag = flag
        self.fixed = fixed
        self.opaque = opaque
        self.name = name
        self.list = list
        self.maybe = maybe
    }

    init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.word = try buffer.readXDRUInt32()
        self.signed = try buffer.readXDRInt32()
        self.hyper = try buffer.readXDRUInt64()
        self.signedHyper = try buffer.readXDRInt64()
        self.flag = try buffer.readXDRBool()
        self.fixed = try buffer.readXDRFixedOpaque(count: Self.fixedBytes)
        self.opaque = try buffer.readXDRVariableOpaque(maxLength: Self.maxOpaque)
        self.name = try buffer.readXDRString(maxLength: Self.maxName)
        self.list = try buffer.readXDRArray(maxCount: Self.maxList) { (b) throws(XDRError) in try b.readXDRUInt32() }
        self.maybe = try buffer.readXDROptional { (b) throws(XDRError) in try b.readXDRUInt64() }
    }

    func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.word)
        buffer.writeXDR(self.signed)
        buffer.writeXDR(self.hyper)
        buffer.writeXDR(self.signedHyper)
        buffer.writeXDR(self.flag)
        buffer.writeXDRFixedOpaque(self.fixed)
        buffer.writeXDRVariableOpaque(self.opaque)
        buffer.writeXDRString(self.name)
        buffer.writeXDRArray(self.list) { $0.writeXDR($1) }
        buffer.writeXDROptional(self.maybe) { $0.writeXDR($1) }
    }

    static func random(using rng: inout SplitMix64) -> Sample {
        let letters = Array("abcdefghijklmnopqrstuvwxyzé日本")
        return Sample(
            word: UInt32.random(in: .min ... .max, using: &rng),
            signed: Int32.random(in: .min ... .max, using: &rng),
            hyper: UInt64.random(in: .min ... .max, using: &rng),
            signedHyper: Int64.random(in: .min ... .max, using: &rng),
            flag: Bool.random(using: &rng),
            fixed: (0..<Self.fixedBytes).map { _ in UInt8.random(in: 0...255, using: &rng) },
            opaque: (0..<Int.random(in: 0...Self.maxOpaque, using: &rng)).map { _ in
                UInt8.random(in: 0...255, using: &rng)
            },
            name: String(
                (0..<Int.random(in: 0...8, using: &rng)).map { _ in letters.randomElement(using: &rng) ?? "a" }),
            list: (0..<Int.random(in: 0...Self.maxList, using: &rng)).map { _ in UInt32.random(in: 0...9, using: &rng)
            },
            maybe: Bool.random(using: &rng) ? UInt64.random(in: .min ... .max, using: &rng) : nil
        )
    }
}

@Suite struct XDRRoundTripTests {
    @Test func randomCompositeValuesRoundTrip() throws {
        let seed = SplitMix64.printedSeed("XDRRoundTripTests")
        var rng = SplitMix64(seed: seed)
        for _ in 0..<2000 {
            let value = Sample.random(using: &rng)
            var buffer = xdrEncoded(value)
            #expect(buffer.readableBytes % 4 == 0, "seed \(seed)")
            let decoded = try Sample(xdr: &buffer)
            #expect(decoded == value, "seed \(seed)")
            #expect(buffer.readableBytes == 0, "seed \(seed)")
        }
    }

    @Test func randomScalarsRoundTrip() throws {
        let seed = SplitMix64.printedSeed("XDRRoundTripTests scalar")
        var rng = SplitMix64(seed: seed)
        for _ in 0..<1000 {
            let u32 = UInt32.random(in: .min ... .max, using: &rng)
            let i32 = Int32.random(in: .min ... .max, using: &rng)
            let u64 = UInt64.random(in: .min ... .max, using: &rng)
            let i64 = Int64.random(in: .min ... .max, using: &rng)
            var buffer = ByteBuffer()
            buffer.writeXDR(u32)
            buffer.writeXDR(i32)
            buffer.writeXDR(u64)
            buffer.writeXDR(i64)
            #expect(buffer.readableBytes == 24)
            #expect(try buffer.readXDR(UInt32.self) == u32)
            #expect(try buffer.readXDR(Int32.self) == i32)
            #expect(try buffer.readXDR(UInt64.self) == u64)
            #expect(try buffer.readXDR(Int64.self) == i64)
        }
    }

    @Test func encodingIsBigEndianAsRFC4506Says() {
        var buffer = ByteBuffer()
        buffer.writeXDR(UInt32(0x0102_0304))
        buffer.writeXDR(Int32(-2))
        buffer.writeXDR(UInt64(0x0102_0304_0506_0708))
        buffer.writeXDR(true)
        #expect(
            Array(buffer.readableBytesView) == [
                1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1,
            ]
        )
    }

    @Test(arguments: 0...9)
    func opaqueIsPaddedWithZerosToFourBytes(length: Int) throws {
        var buffer = ByteBuffer()
        buffer.writeXDRVariableOpaque([UInt8](repeating: 0xaa, count: length))
        #expect(buffer.readableBytes == 4 + length + xdrPadding(length))
        #expect(buffer.readableBytes % 4 == 0)
        let padding = buffer.readableBytesView.suffix(xdrPadding(length))
        #expect(padding.allSatisfy { $0 == 0 })
        let slice = try buffer.readXDRVariableOpaqueSlice(maxLength: 16)
        #expect(slice.readableBytes == length)
        #expect(buffer.readableBytes == 0)
    }

    @Test func stringBytesNeedNotBeUTF8() throws {
        var buffer = ByteBuffer()
        buffer.writeXDRVariableOpaque([0xff, 0xfe, 0x41])
        #expect(try buffer.readXDRStringBytes(maxLength: 10) == [0xff, 0xfe, 0x41])
    }
}
