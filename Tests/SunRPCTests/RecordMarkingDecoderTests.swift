@_spi(CustomByteBufferAllocator) import NIOCore
import Synchronization
import TestSupport
import Testing

@testable import SunRPC

#if canImport(Glibc)
import Glibc
#endif

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

    /// A first fragment of 60 bytes, then the header of a last fragment of `bytes`.
    static func sixtyBytesThenLastFragmentHeader(_ bytes: UInt32) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(60), endianness: .big)
        buffer.writeRepeatingByte(1, count: 60)
        buffer.writeInteger(UInt32(0x8000_0000) | bytes, endianness: .big)
        return buffer
    }

    @Test func fragmentsAddingUpOverTheLimitThrow() throws {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 100)
        var buffer = Self.sixtyBytesThenLastFragmentHeader(41)
        #expect(throws: RecordMarkingError.recordTooLarge(announcedBytes: 101, limit: 100)) {
            _ = try decoder.decode(buffer: &buffer)
        }
    }

    @Test func recordOfExactlyTheLimitIsAccepted() throws {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 100)
        var buffer = Self.sixtyBytesThenLastFragmentHeader(40)
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
        let seed = SplitMix64.printedSeed("RecordMarkingDecoderTests garbage")
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

// Bytes the counting allocator below was asked to copy (copy-on-write of a buffer) and to
// (re)allocate: a C function pointer cannot capture, so the counters are global.
private let countedCopyBytes = Atomic<Int>(0)
private let countedAllocationBytes = Atomic<Int>(0)

/// A `ByteBufferAllocator` that counts what it copies and allocates, so reassembly cost is
/// measured in bytes, not in (machine-dependent) time.
private let countingAllocator = ByteBufferAllocator(
    allocate: { size in
        countedAllocationBytes.add(Int(size), ordering: .relaxed)
        return malloc(size)
    },
    reallocate: { pointer, _, newSize in
        countedAllocationBytes.add(Int(newSize), ordering: .relaxed)
        return realloc(pointer, newSize)
    },
    deallocate: { pointer in free(pointer) },
    copy: { destination, source, count in
        countedCopyBytes.add(Int(count), ordering: .relaxed)
        destination.copyMemory(from: source, byteCount: Int(count))
    }
)

/// A record sent as many tiny fragments was copied whole for every fragment
/// (copy-on-write of the accumulated buffer still held by the decoder's state): quadratic, and
/// four connections kept the event loops busy for minutes.
@Suite(.serialized) struct RecordMarkingCostTests {
    /// Reassembles a record of `recordBytes` sent as 4-byte fragments; returns the bytes copied
    /// and allocated for it.
    static func reassemble(recordBytes: Int) throws -> (copied: Int, allocated: Int, fragments: Int) {
        let fragmentBytes = 4
        var message = countingAllocator.buffer(capacity: recordBytes)
        message.writeRepeatingByte(7, count: recordBytes)
        // The stream as the receive buffer would hold it, from the same allocator so that a
        // copy of either buffer is counted.
        let plain = fragmented(message, fragmentBytes: fragmentBytes)
        var stream = countingAllocator.buffer(capacity: plain.readableBytes)
        stream.writeImmutableBuffer(plain)
        var decoder = RecordMarkingDecoder(
            maxRecordBytes: recordBytes,
            maxFragmentsPerRecord: recordBytes / fragmentBytes,
            allocator: countingAllocator
        )
        countedCopyBytes.store(0, ordering: .relaxed)
        countedAllocationBytes.store(0, ordering: .relaxed)
        let record = try #require(try decoder.decode(buffer: &stream))
        let copied = countedCopyBytes.load(ordering: .relaxed)
        let allocated = countedAllocationBytes.load(ordering: .relaxed)
        #expect(record.readableBytes == recordBytes)
        #expect(record.readableBytesView.allSatisfy { $0 == 7 })
        return (copied, allocated, recordBytes / fragmentBytes)
    }

    @Test func reassemblyCopiesAndAllocatesLinearly() throws {
        for recordBytes in [16 << 10, 64 << 10, 128 << 10] {
            let cost = try Self.reassemble(recordBytes: recordBytes)
            // Linear: the accumulator is never copied (only grown by doubling, at most about
            // twice the record in all), whatever the number of fragments. The quadratic decoder
            // copied about fragments × recordBytes / 2 bytes here (2 GiB for 128 KiB).
            #expect(
                cost.copied <= recordBytes,
                "\(cost.fragments) fragments of a \(recordBytes)-byte record copied \(cost.copied) bytes")
            #expect(
                cost.allocated <= 4 * recordBytes,
                "\(cost.fragments) fragments of a \(recordBytes)-byte record allocated \(cost.allocated) bytes")
        }
    }
}

@Suite struct RecordMarkingFragmentLimitTests {
    static func stream(fragments: Int) -> ByteBuffer {
        var message = ByteBuffer()
        message.writeRepeatingByte(1, count: fragments)
        return fragmented(message, fragmentBytes: 1)
    }

    @Test func recordOfExactlyTheFragmentLimitIsAccepted() throws {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 1 << 20, maxFragmentsPerRecord: 100)
        var buffer = Self.stream(fragments: 100)
        let record = try #require(try decoder.decode(buffer: &buffer))
        #expect(record.readableBytes == 100)
        // The count starts again with the next record.
        var next = Self.stream(fragments: 100)
        #expect(try decoder.decode(buffer: &next)?.readableBytes == 100)
    }

    @Test func oneFragmentOverTheLimitThrowsBeforeBufferingIt() throws {
        var decoder = RecordMarkingDecoder(maxRecordBytes: 1 << 20, maxFragmentsPerRecord: 100)
        var buffer = Self.stream(fragments: 101)
        #expect(throws: RecordMarkingError.tooManyFragments(limit: 100)) {
            _ = try decoder.decode(buffer: &buffer)
        }
        // The 101st fragment (header + one byte) is left unread, and the decoder stays failed.
        #expect(buffer.readableBytes == 5)
        #expect(throws: RecordMarkingError.tooManyFragments(limit: 100)) { _ = try decoder.decode(buffer: &buffer) }
    }
}
