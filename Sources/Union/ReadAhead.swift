import Dispatch
import Glibc

/// How far the READs of one file got: where they end, and how far ahead of that the kernel was asked to read.
///
/// Why a window of its own: a client keeps many READs of a file in flight (the Linux client 16 to 64 of 1 MiB), and
/// the server answers them on several threads, a little out of order, so the kernel's readahead, which follows one
/// descriptor's reads, often takes them for a random reader's. Asking for only a few READs ahead, and not at all
/// when a READ was answered from the page cache on an event loop, left the disk idle between stretches: a cold
/// sequential READ of a lower file then waited for the disk every few MiB.
struct ReadProgress: Sendable {
    /// The furthest end of a READ so far (nil: none yet).
    var end: UInt64?
    /// Data before this offset was asked to be read ahead.
    var readAheadTo: UInt64 = 0

    /// How far ahead of a sequential reader the data is asked for: sixteen READs, at most 16 MiB.
    static func window(count: Int) -> UInt64 { min(UInt64(count) &* 16, 16 << 20) }

    /// Notes a READ of `count` bytes at `offset` (the range a READ answered; `offset + count` fits in an `off_t`).
    /// Returns the stretch to read ahead now: none for a READ that does not continue a sequential reader, nor while
    /// more than half a window ahead of the reader is asked for already (each READ then asks for no more than it
    /// consumed, not the whole window again).
    mutating func note(offset: UInt64, count: Int) -> Range<UInt64>? {
        guard count > 0 else { return nil }
        let readEnd = offset &+ UInt64(count)
        guard UnionNamespace.continuesSequentially(offset: offset, count: count, lastEnd: self.end) else {
            // A new reader, or one that jumped: it starts afresh here.
            self.end = readEnd
            self.readAheadTo = readEnd
            return nil
        }
        let end = max(self.end ?? 0, readEnd)
        self.end = end
        let window = Self.window(count: count)
        guard self.readAheadTo < end &+ window / 2 else { return nil }
        let from = max(self.readAheadTo, end)
        self.readAheadTo = end &+ window
        return from..<self.readAheadTo
    }
}

extension UnionNamespace {
    /// Asks the kernel to read `range` of the file of `fd` ahead, on a queue of its own: for a caller that must not
    /// block (an event loop; `POSIX_FADV_WILLNEED` submits the reads itself and may wait for the disk's queue).
    static func readAheadLater(_ fd: FD, _ range: Range<UInt64>) {
        // The closure holds the descriptor open until it ran (`FD` closes it with its last reference).
        Self.readAheadQueue.async {
            _ = posix_fadvise(
                fd.raw, off_t(clamping: range.lowerBound), off_t(clamping: range.count), POSIX_FADV_WILLNEED)
        }
    }

    private static let readAheadQueue = DispatchQueue(label: "strata-readahead", qos: .utility)
}
