import NIOCore

/// Gathers RPC records (RFC 5531 §11 record marking) from the bytes of a TCP stream, for the
/// client side, where replies can be large (1 MiB READs) and must cost little.
///
/// A record that lies wholly inside one read is handed out as a slice of the receive buffer
/// (no copy). One that spans reads is copied once, into a buffer allocated at its announced
/// size when its header arrives: no buffer grows and nothing is compacted, so each byte is
/// copied at most once after the kernel's copy (a growing cumulation buffer copies it
/// several times).
struct ReplyReassembler {
    enum Failure: Error, Equatable {
        case recordTooLarge(announced: Int, limit: Int)
    }

    let maxRecordBytes: Int
    /// Bytes of a fragment header split across reads.
    private var header: [UInt8] = []
    /// The fragment being filled (capacity: its announced size), and how many bytes it lacks.
    private var fragment: ByteBuffer?
    private var fragmentMissing = 0
    private var fragmentIsLast = false
    /// Earlier fragments of a record cut into several.
    private var record: ByteBuffer?

    init(maxRecordBytes: Int) {
        self.maxRecordBytes = maxRecordBytes
    }

    /// Consumes `input` and calls `deliver` with each whole record, in order.
    mutating func feed(_ input: inout ByteBuffer, deliver: (ByteBuffer) -> Void) throws(Failure) {
        while input.readableBytes > 0 {
            if self.fragment != nil {
                let count = min(self.fragmentMissing, input.readableBytes)
                var piece = input.readSlice(length: count)!
                self.fragment!.writeBuffer(&piece)
                self.fragmentMissing -= count
                if self.fragmentMissing == 0 {
                    let complete = self.fragment.take()!
                    self.finish(fragment: complete, deliver: deliver)
                }
                continue
            }
            // A fragment header: four bytes, possibly split across reads.
            let word: UInt32
            if self.header.isEmpty, let whole = input.readInteger(endianness: .big, as: UInt32.self) {
                word = whole
            } else {
                while self.header.count < 4, let byte = input.readInteger(as: UInt8.self) { self.header.append(byte) }
                guard self.header.count == 4 else { return }
                word = self.header.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) }
                self.header.removeAll(keepingCapacity: true)
            }
            let length = Int(word & 0x7fff_ffff)
            let isLast = word & 0x8000_0000 != 0
            let sofar = self.record?.readableBytes ?? 0
            guard length <= self.maxRecordBytes - sofar else {
                throw Failure.recordTooLarge(announced: sofar + length, limit: self.maxRecordBytes)
            }
            if input.readableBytes >= length {
                let slice = input.readSlice(length: length)!
                self.finish(fragment: slice, isLast: isLast, deliver: deliver)
            } else {
                var buffer = ByteBufferAllocator().buffer(capacity: length)
                buffer.writeBuffer(&input)
                self.fragment = buffer
                self.fragmentMissing = length - buffer.readableBytes
                self.fragmentIsLast = isLast
            }
        }
    }

    private mutating func finish(fragment: ByteBuffer, deliver: (ByteBuffer) -> Void) {
        self.finish(fragment: fragment, isLast: self.fragmentIsLast, deliver: deliver)
    }

    private mutating func finish(fragment: ByteBuffer, isLast: Bool, deliver: (ByteBuffer) -> Void) {
        var fragment = fragment
        if var record = self.record.take() {
            record.writeBuffer(&fragment)
            if isLast { deliver(record) } else { self.record = record }
        } else if isLast {
            deliver(fragment)
        } else {
            // The first of several fragments: a record buffer of our own to append to.
            var record = ByteBufferAllocator().buffer(capacity: max(4096, 2 * fragment.readableBytes))
            record.writeBuffer(&fragment)
            self.record = record
        }
    }
}
