import NIOCore

// RFC 5531 §11: on a byte stream a record is one or more fragments, each preceded by a
// four-byte header: the high bit marks the last fragment, the low 31 bits give its length.

/// Why a record-marked stream was abandoned.
public enum RecordMarkingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The record being reassembled would exceed `limit` bytes (RPCServerConfiguration.maxRecordBytes).
    case recordTooLarge(announcedBytes: Int, limit: Int)

    public var description: String {
        switch self {
        case .recordTooLarge(let announced, let limit):
            return
                "RPC record of at least \(announced) bytes exceeds the limit of \(limit) bytes "
                + "(raise maxRecordBytes to accept it)"
        }
    }
}

/// Reassembles RPC records from a TCP byte stream.
///
/// An enum state machine: it checks each fragment length against the record limit before any
/// byte of that fragment is buffered or allocated, and returns `.needMoreData` without moving the
/// reader index until a whole fragment is present.
public struct RecordMarkingDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer

    enum State: Sendable {
        /// Waiting for a fragment header; `record` holds the earlier fragments of this record.
        case waitingForHeader(record: ByteBuffer?)
        /// The header (not yet consumed) announced a fragment that fits the limit.
        case waitingForFragment(length: Int, isLast: Bool, record: ByteBuffer?)
        /// An oversized record was announced: nothing more is decoded.
        case failed
    }

    var state: State = .waitingForHeader(record: nil)
    public let maxRecordBytes: Int

    public init(maxRecordBytes: Int) {
        precondition(maxRecordBytes > 0, "maxRecordBytes must be positive")
        self.maxRecordBytes = maxRecordBytes
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
    /// would take the record over `maxRecordBytes`; the decoder then stays failed.
    public mutating func step(buffer: inout ByteBuffer) throws(RecordMarkingError) -> Step {
        while true {
            switch self.state {
            case .failed:
                throw RecordMarkingError.recordTooLarge(announcedBytes: self.maxRecordBytes + 1, limit: self.maxRecordBytes)

            case .waitingForHeader(let record):
                guard let header = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
                    return .needMoreData
                }
                let length = Int(header & 0x7fff_ffff)
                let isLast = header & 0x8000_0000 != 0
                let sofar = record?.readableBytes ?? 0
                // Checked before anything is buffered for this fragment.
                if length > self.maxRecordBytes - sofar {
                    self.state = .failed
                    throw RecordMarkingError.recordTooLarge(announcedBytes: sofar + length, limit: self.maxRecordBytes)
                }
                self.state = .waitingForFragment(length: length, isLast: isLast, record: record)

            case .waitingForFragment(let length, let isLast, let record):
                guard buffer.readableBytes >= 4 + length else {
                    return .needMoreData
                }
                buffer.moveReaderIndex(forwardBy: 4)
                // `readSlice` shares storage with the receive buffer: no copy for the common
                // single-fragment record.
                guard var fragment = buffer.readSlice(length: length) else { return .needMoreData }
                let assembled: ByteBuffer
                if var record {
                    record.writeBuffer(&fragment)
                    assembled = record
                } else {
                    assembled = fragment
                }
                if isLast {
                    self.state = .waitingForHeader(record: nil)
                    return .record(assembled)
                }
                self.state = .waitingForHeader(record: assembled)
                return .consumedFragment
            }
        }
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
enum RecordMarking {
    static let lastFragmentBit: UInt32 = 0x8000_0000

    static func header(length: Int) -> UInt32 {
        Self.lastFragmentBit | UInt32(truncatingIfNeeded: length)
    }
}
