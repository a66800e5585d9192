import NFS3
import NIOCore
import TestSupport
import Testing
import Union
import XDR

@testable import StrataServer

/// Corrupted arguments reach the handlers (with handles that resolve): every call answers
/// something, nothing traps. Seeds are printed so a failure replays.
@Suite struct NFS3FuzzTests {
    @Test(arguments: NFS3Procedure.allCases.filter { $0 != .null })
    func corruptedArgumentsNeverTrap(procedure: NFS3Procedure) throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "data", "d/g": "x"])
        let file = try harness.handle("f")
        let seed = 0x5EED_0000 &+ UInt64(procedure.rawValue)
        var rng = SplitMix64(seed: seed)
        print("corruptedArgumentsNeverTrap(\(procedure.name)) seed \(seed)")
        // Valid arguments naming the root directory or a file, so corruption past the handle
        // reaches the union.
        var template = NFS3DispatchTests.arguments(procedure)
        let fake = NFS3DispatchTests.handle.data
        let target = [.read, .write, .commit, .link, .readlink, .setattr].contains(procedure) ? file : harness.root()
        var bytes = Array(template.readBytes(length: template.readableBytes) ?? [])
        // Swap every occurrence of the placeholder handle for a real one (same length or not).
        var rebuilt: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if index + 4 + fake.count <= bytes.count,
                Array(bytes[index..<(index + 4)]) == [0, 0, 0, UInt8(fake.count)],
                Array(bytes[(index + 4)..<(index + 4 + fake.count)]) == fake
            {
                var encoded = ByteBuffer()
                target.encode(xdr: &encoded)
                rebuilt += encoded.readableBytesView
                index += 4 + fake.count
            } else {
                rebuilt.append(bytes[index])
                index += 1
            }
        }
        bytes = rebuilt
        let handleBytes = 4 + target.data.count + xdrPadding(target.data.count)
        var reachedUnion = 0
        for _ in 0..<150 {
            var mutated = bytes
            let flips = Int(rng.next() % 3) + 1
            for _ in 0..<flips where mutated.count > handleBytes {
                // Corrupt only past the leading file handle.
                let position = handleBytes + Int(rng.next() % UInt64(mutated.count - handleBytes))
                mutated[position] = UInt8(truncatingIfNeeded: rng.next())
            }
            if rng.next() % 8 == 0 {
                mutated = Array(mutated.prefix(Int(rng.next() % UInt64(mutated.count + 1))))
            }
            var arguments = ByteBuffer(bytes: mutated)
            let outcome = harness.service.handle(
                procedure: procedure.rawValue, arguments: &arguments, logger: harness.logger, resolve: harness.resolve)
            if case .success(let reply) = outcome {
                let status = try NFS3DispatchTests.decodeStatus(procedure, reply)
                if status != .badhandle { reachedUnion += 1 }
            }
        }
        #expect(reachedUnion > 0, "no corrupted call got past the file handle")
    }
}
