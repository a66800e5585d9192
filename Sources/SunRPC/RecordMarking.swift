import NIOCore

// RFC 5531 §11: on a byte stream a record is one or more fragments, each preceded by a
// four-byte header: the high bit marks the last fragment, the low 31 bits give its length.

/// Why a record-marked stream was abandoned.
public enum RecordMarkingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The record being reassembled would exceed `limit` bytes (RPCServerConfiguration.maxRecordBytes).
    case recordTooLarge(announcedBytes: Int, limit: Int)
    /// The record is cut into more than `limit` fragments
    /// (RPCServerConfiguration.maxFragmentsPerRecord).
    case tooManyFragments(limit: Int)

    public var description: String {
        switch self {
        case .recordTooLarge(let announced, let limit):
            return
                "RPC record of at least \(announced) bytes exceeds the limit of \(limit) bytes "
                + "(raise maxRecordBytes to accept it)"
        case .tooManyFragments(let limit):
            return
                "RPC record cut into more than \(limit) fragments "
                + "(raise maxFragmentsPerRecord to accept it)"
        }
    }
}

/// Reassembles RPC records from a TCP byte stream.
///
/// An enum state machine: it checks each fragment length against the record limit before any
/// byte of that fragment is buffered or allocated, and returns `.needMoreData` without moving the
/// reader index until a whole fragment is present.
///
/// Cost is linear in the record: a record of several fragments is gathered in one buffer owned
/// by the decoder alone (`partialRecord`, never also held by `state`, so appending never copies
/// it), grown by doubling. The fragment count is bounded too, so a peer cannot make the server
/// walk millions of four-byte fragments for one call.
public struct RecordMarkingDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer

    enum State: Sendable {
        /// Waiting for a fragment header.
        case waitingForHeader
        /// The header (not yet consumed) announced a fragment that fits the limit.
        case waitingForFragment(length: Int, isLast: Bool)
        /// An oversized record was announced: nothing more is decoded.
        case failed(RecordMarkingError)
    }

    var state: State = .waitingForHeader
    /// The earlier fragments of the record being reassembled (nil: none yet).
    var partialRecord: ByteBuffer? = nil
    /// Fragments of the record being reassembled consumed so far.
    var fragmentsSoFar = 0
    public let maxRecordBytes: Int
    public let maxFragmentsPerRecord: Int
    let allocator: ByteBufferAllocator

    public init(
        maxRecordBytes: Int, maxFragmentsPerRecord: Int = 4096, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) {
        precondition(maxRecordBytes > 0, "maxRecordBytes must be positive")
        precondition(maxFragmentsPerRecord > 0, "maxFragmentsPerRecord must be positive")
        self.maxRecordBytes = maxRecordBytes
        self.maxFragmentsPerRecord = maxFragmentsPerRecord
        self.allocator = allocator
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch try self.step(buffer: &buffer) {
        case .record(let record):
            context.fireChannelRead(Self.wrapInboundOut(record))
            return .continue
        case .consumedFragment:
            return .continue
        case .needMoreData:
            return .needMoreData
        }
    }

    /// What one decoding step did.
    public enum Step: Sendable {
        /// A whole record was read.
        case record(ByteBuffer)
        /// A non-final fragment was consumed into the record being reassembled.
        case consumedFragment
        /// A header or fragment is incomplete; the reader index has not moved.
        case needMoreData
    }

    /// One step of the state machine. Throws, before buffering anything of it, when a fragment
    /// would take the record over `maxRecordBytes` or over `maxFragmentsPerRecord`; the decoder
    /// then stays failed.
    public mutating func step(buffer: inout ByteBuffer) throws(RecordMarkingError) -> Step {
        while true {
            switch self.state {
            case .failed(let error):
                throw error

            case .waitingForHeader:
                guard let header = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
                    return .needMoreData
                }
                let length = Int(header & 0x7fff_ffff)
                let isLast = header & 0x8000_0000 != 0
                let sofar = self.partialRecord?.readableBytes ?? 0
                // Checked before anything is buffered for this fragment.
                if length > self.maxRecordBytes - sofar {
                    return try self.fail(.recordTooLarge(announcedBytes: sofar + length, limit: self.maxRecordBytes))
                }
                if self.fragmentsSoFar >= self.maxFragmentsPerRecord {
                    return try self.fail(.tooManyFragments(limit: self.maxFragmentsPerRecord))
                }
                self.state = .waitingForFragment(length: length, isLast: isLast)

            case .waitingForFragment(let length, let isLast):
                guard buffer.readableBytes >= 4 + length else {
                    return .needMoreData
                }
                buffer.moveReaderIndex(forwardBy: 4)
                // `readSlice` shares storage with the receive buffer: no copy for the common
                // single-fragment record.
                guard var fragment = buffer.readSlice(length: length) else { return .needMoreData }
                self.state = .waitingForHeader
                if var record = self.partialRecord.take() {
                    // `take()` leaves the decoder without a reference: the append is in place.
                    record.writeBuffer(&fragment)
                    if isLast {
                        self.fragmentsSoFar = 0
                        return .record(record)
                    }
                    self.partialRecord = record
                    self.fragmentsSoFar += 1
                    return .consumedFragment
                }
                if isLast {
                    return .record(fragment)
                }
                // First of several fragments: copy it out of the receive buffer into storage of
                // our own, so neither buffer's later writes copy the other.
                var record = self.allocator.buffer(capacity: max(4096, 2 * length))
                record.writeBuffer(&fragment)
                self.partialRecord = record
                self.fragmentsSoFar = 1
                return .consumedFragment
            }
        }
    }

    private mutating func fail(_ error: RecordMarkingError) throws(RecordMarkingError) -> Step {
        self.state = .failed(error)
        self.partialRecord = nil
        throw error
    }

    /// Decodes until a whole record is read (returned) or more data is needed (`nil`).
    public mutating func decode(buffer: inout ByteBuffer) throws(RecordMarkingError) -> ByteBuffer? {
        while true {
            switch try self.step(buffer: &buffer) {
            case .record(let record): return record
            case .consumedFragment: continue
            case .needMoreData: return nil
            }
        }
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // A partial record at EOF is dropped: the client went away mid-call.
        while case .continue = try self.decode(context: context, buffer: &buffer) {}
        return .needMoreData
    }
}

/// Record marking on the way out: one fragment per reply.
package enum RecordMarking {
    static let lastFragmentBit: UInt32 = 0x8000_0000

    package static func header(length: Int) -> UInt32 {
        Self.lastFragmentBit | UInt32(truncatingIfNeeded: length)
    }
}
