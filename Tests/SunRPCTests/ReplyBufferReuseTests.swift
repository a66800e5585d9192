import Glibc
import NIOCore
import Testing

@testable import SunRPC

/// READ replies of 1 MiB are allocated by the dozen (one per call in flight) and freed once written; the server's
/// allocator settings (`RPCServer.keepReplyBuffersMapped`) must let the next batch reuse their pages, not fault in
/// fresh ones.
@Suite struct ReplyBufferReuseTests {
    /// Page faults of the calling thread so far.
    private func minorFaults() -> Int {
        var usage = rusage()
        getrusage(1, &usage)  // RUSAGE_THREAD (Linux), which the Glibc module does not import
        return usage.ru_minflt
    }

    @Test func freedReplyBuffersAreReusedWithoutFaultingPagesAgain() {
        _ = RPCServer.keepReplyBuffersMapped
        let replyBytes = (1 << 20) + 128
        let inFlight = 16
        func batch() {
            var buffers: [ByteBuffer] = []
            for _ in 0..<inFlight {
                var buffer = ByteBufferAllocator().buffer(capacity: replyBytes)
                buffer.writeRepeatingByte(0x5a, count: replyBytes)  // touches every page, as a READ's data does
                buffers.append(buffer)
            }
            #expect(buffers.allSatisfy { $0.readableBytes == replyBytes })
        }
        batch()  // the first batch maps its pages
        let before = self.minorFaults()
        for _ in 0..<8 { batch() }
        let faults = self.minorFaults() - before
        // Without reuse each batch faults in every page again: 8 × 16 × 257 pages.
        let pagesPerRound = inFlight * (replyBytes / 4096 + 1)
        #expect(faults < pagesPerRound, "\(faults) page faults for 8 batches of reused buffers")
    }
}
