import NIOCore
import TestSupport
import Testing
import XDR

@testable import NFS3

@Suite struct RoundTripTests {
    /// Every sample encodes to whole XDR words and decodes to itself, leaving nothing behind.
    static func expectRoundTrips(_ samples: [CodableSample]) throws {
        for sample in samples {
            var buffer = sample.encoded
            #expect(buffer.readableBytes % 4 == 0, "\(sample) is not a multiple of 4 bytes")
            #expect(try sample.decode(&buffer), "\(sample) did not decode to itself")
            #expect(buffer.readableBytes == 0, "\(sample) left bytes behind")
        }
    }

    /// Every proper prefix of every sample's encoding fails to decode.
    static func expectTruncationsThrow(_ samples: [CodableSample]) {
        for sample in samples {
            for length in 0..<sample.encoded.readableBytes {
                var prefix = sample.encoded.getSlice(at: sample.encoded.readerIndex, length: length) ?? ByteBuffer()
                #expect(throws: XDRError.self, "\(sample) decoded from \(length) bytes") {
                    _ = try sample.decode(&prefix)
                }
            }
        }
    }

    @Test(arguments: NFS3Procedure.allCases)
    func argumentsRoundTrip(procedure: NFS3Procedure) throws {
        try Self.expectRoundTrips(Sample.arguments(procedure))
    }

    @Test(arguments: NFS3Procedure.allCases)
    func resultsRoundTrip(procedure: NFS3Procedure) throws {
        try Self.expectRoundTrips(Sample.results(procedure))
    }

    @Test(arguments: Sample.mountSamples)
    func mountTypesRoundTrip(sample: CodableSample) throws {
        var buffer = sample.encoded
        #expect(try sample.decode(&buffer))
        #expect(buffer.readableBytes == 0)
    }

    @Test(arguments: NFS3Procedure.allCases)
    func truncatedArgumentsThrow(procedure: NFS3Procedure) {
        Self.expectTruncationsThrow(Sample.arguments(procedure).filter { $0.encoded.readableBytes > 0 })
    }

    @Test(arguments: NFS3Procedure.allCases)
    func truncatedResultsThrow(procedure: NFS3Procedure) {
        Self.expectTruncationsThrow(Sample.results(procedure))
    }

    @Test(arguments: Sample.mountSamples)
    func truncatedMountTypesThrow(sample: CodableSample) {
        for length in 0..<sample.encoded.readableBytes {
            var prefix = sample.encoded.getSlice(at: sample.encoded.readerIndex, length: length) ?? ByteBuffer()
            #expect(throws: XDRError.self) { _ = try sample.decode(&prefix) }
        }
    }

    /// Random bytes and random corruptions of valid encodings: decoders throw or succeed, never
    /// trap. The seed is printed so a failure replays.
    @Test(arguments: NFS3Procedure.allCases)
    func garbageNeverTraps(procedure: NFS3Procedure) {
        let seed = UInt64(procedure.rawValue) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        var rng = SplitMix64(seed: seed)
        let samples = Sample.arguments(procedure) + Sample.results(procedure)
        for sample in samples {
            for _ in 0..<200 {
                var bytes = Array(sample.encoded.readableBytesView)
                if bytes.isEmpty { bytes = [0, 0, 0, 0] }
                let flips = Int(rng.next() % 4) + 1
                for _ in 0..<flips {
                    let index = Int(rng.next() % UInt64(bytes.count))
                    bytes[index] = UInt8(truncatingIfNeeded: rng.next())
                }
                var buffer = ByteBuffer(bytes: bytes)
                _ = try? sample.decode(&buffer)
            }
        }
        print("garbageNeverTraps(\(procedure.name)) seed \(seed)")
    }
}
