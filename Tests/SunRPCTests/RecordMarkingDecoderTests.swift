import NIOCore
import Testing

@testable import SunRPC

@Suite struct RecordMarkingDecoderTests {
    /// A stream of records of random sizes, each cut into random fragments.
    static func makeStream(seed: UInt64, records: Int) -> (stream: ByteBuffer, records: [[UInt8]]) {
        var rng = SplitMix64(seed: seed)
        var stream = ByteBuffer()
        var originals: [[UInt8]] = []
        for _ in 0..<records {
            let length = Int(rng.next() % 300)
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            originals.append(bytes)
            var message = ByteBuffer(bytes: bytes)
            if length == 0 {
                stream.writeInteger(UInt32(0x8000_0000), endianness: .big)
                continue
            }
            while message.readableBytes > 0 {
                let take = min(message.readableBytes, 1 + Int(rng.next() % 64))
                var fragment = message.readSlice(length: take) ?? ByteBuffer()
                let isLast = message.readableBytes == 0
                stream.writeInteger((isLast ? 0x8000_0000 : 0) | UInt32(take), endianness: .big)
                stream.writeBuffer(&fragment)
            }
        }
        return (stream, originals)
    }

    /// "Drip feeding the bytes, one by one" (NIOTestUtils' ByteToMessageDecoderVerifier): the
    /// same records come out whatever the chunking, and `.needMoreData` never moves the reader
    /// index.
    @Test(arguments: [1, 2, 3, 5, 7, 64, 4096])
    func dripFeedReassemblesRecords(chunkBytes: Int) throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("RecordMarkingDecoderTests seed \(seed) chunk \(chunkBytes)")
        var (stream, originals) = Self.makeStream(seed: seed, records: 40)
        var decoder = RecordMarkingDecoder(maxRecordBytes: 1024)
        var received = ByteBuffer()
        var decoded: [[UInt8]] = []
        while stream.readableBytes > 0 {
            var chunk = stream.readSlice(length: min(chunkBytes, stream.readableBytes)) ?? ByteBuffer()
            received.writeBuffer(&chunk)
            var steps = 0
            loop: while true {
                steps += 1
                try #require(steps < 10_000)
                let readerIndex = received.readerIndex
                switch try decoder.step(buffer: &received) {
                case .record(let record):
                    decoded.append(Array(record.readableBytesView))
                case .consumedFragment:
                    continue
                case .needMoreData:
                    #expect(received.readerIndex == readerIndex, "needMoreData moved the reader index")
                    break loop
                }
            }
            received.discardReadBytes()
        }
        #expect(decoded == originals, "seed \(seed)")
        #expect(received.readableBytes == 0)
    }

    @Test func oversizedFragmentThrowsOnTheHeaderAlone() {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 1000)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0x8000_0000 | 1001), endianness: .big)
        #expect(throws: RecordMarkingError.recordTooLarge(announcedBytes: 1001, limit: 1000)) {
            _ = try decoder.decode(buffer: &buffer)
        }
        // Once failed, it stays failed.
        #expect(throws: RecordMarkingError.self) { _ = try decoder.decode(buffer: &buffer) }
    }

    @Test func hugeAnnouncedLengthDoesNotWaitForTheBytes() {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 4 << 20)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0xffff_ffff), endianness: .big)
        #expect(throws: RecordMarkingError.self) { _ = try decoder.decode(buffer: &buffer) }
    }

    @Test func fragmentsAddingUpOverTheLimitThrow() throws {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 100)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(60), endianness: .big)
        buffer.writeRepeatingByte(1, count: 60)
        buffer.writeInteger(UInt32(0x8000_0000 | 41), endianness: .big)
        #expect(throws: RecordMarkingError.recordTooLarge(announcedBytes: 101, limit: 100)) {
            _ = try decoder.decode(buffer: &buffer)
        }
    }

    @Test func recordOfExactlyTheLimitIsAccepted() throws {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 100)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(60), endianness: .big)
        buffer.writeRepeatingByte(1, count: 60)
        buffer.writeInteger(UInt32(0x8000_0000 | 40), endianness: .big)
        buffer.writeRepeatingByte(2, count: 40)
        let record = try #require(try decoder.decode(buffer: &buffer))
        #expect(record.readableBytes == 100)
        #expect(record.getInteger(at: record.readerIndex + 59, as: UInt8.self) == 1)
        #expect(record.getInteger(at: record.readerIndex + 60, as: UInt8.self) == 2)
    }

    @Test func emptyFragmentsAreAllowed() throws {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 100)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0), endianness: .big)
        buffer.writeInteger(UInt32(3), endianness: .big)
        buffer.writeBytes([7, 8, 9])
        buffer.writeInteger(UInt32(0x8000_0000), endianness: .big)
        let record = try #require(try decoder.decode(buffer: &buffer))
        #expect(Array(record.readableBytesView) == [7, 8, 9])
    }

    @Test func randomGarbageNeverTraps() {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("RecordMarkingDecoderTests garbage seed \(seed)")
        var rng = SplitMix64(seed: seed)
        for _ in 0..<500 {
            var decoder = RecordMarkingDecoder(maxRecordBytes: 512)
            let bytes = (0..<Int(rng.next() % 2000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            var buffer = ByteBuffer(bytes: bytes)
            for _ in 0..<2000 {
                guard let step = try? decoder.step(buffer: &buffer) else { break }
                if case .needMoreData = step { break }
            }
        }
    }
}

/// A small seeded generator so failures replay (the seed is printed).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9e37_79b9_7f4a_7c15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
