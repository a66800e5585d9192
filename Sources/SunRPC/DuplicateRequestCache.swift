import NIOCore
import Synchronization

// The duplicate request cache, after Linux knfsd (fs/nfsd/nfscache.c): a retransmission is
// recognised by client address, xid, program/version/procedure and a checksum of the first
// bytes of the arguments (knfsd: RC_CSUMLEN = 256), plus the argument length. A UDP client is
// known by IP and port; a TCP client by IP alone, since it may retransmit on a new connection
// from another port after a reconnect.

/// Identifies one call for the duplicate request cache.
struct DuplicateRequestKey: Hashable, Sendable {
    var client: String
    var xid: UInt32
    var program: UInt32
    var version: UInt32
    var procedure: UInt32
    var argumentBytes: Int
    var argumentChecksum: UInt32

    static let checksummedBytes = 256

    init(
        remoteAddress: SocketAddress,
        transport: RPCTransport,
        xid: UInt32,
        program: UInt32,
        version: UInt32,
        procedure: UInt32,
        arguments: ByteBuffer
    ) {
        let ip = remoteAddress.ipAddress ?? "\(remoteAddress)"
        switch transport {
        case .udp: self.client = "udp \(ip) \(remoteAddress.port ?? 0)"
        case .tcp: self.client = "tcp \(ip)"
        }
        self.xid = xid
        self.program = program
        self.version = version
        self.procedure = procedure
        self.argumentBytes = arguments.readableBytes
        // FNV-1a over the first bytes of the arguments.
        var hash: UInt32 = 0x811c_9dc5
        arguments.withUnsafeReadableBytes { bytes in
            for byte in bytes.prefix(Self.checksummedBytes) {
                hash = (hash ^ UInt32(byte)) &* 0x0100_0193
            }
        }
        self.argumentChecksum = hash
    }
}

/// A reply message without record mark: the RPC reply header (kept as its fields, written
/// straight into the outgoing buffer) and, for SUCCESS, the results.
struct RPCReplyMessage: Sendable {
    var xid: UInt32
    var body: RPCReplyBody
    var results: ByteBuffer?

    var headerByteCount: Int { RPCMessageCodec.replyHeaderByteCount(self.body) }

    var byteCount: Int { self.headerByteCount + (self.results?.readableBytes ?? 0) }

    func writeHeader(into buffer: inout ByteBuffer) {
        RPCMessageCodec.writeReplyHeader(xid: self.xid, body: self.body, into: &buffer)
    }

    /// Header and results in one buffer (for a datagram).
    func joined(allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: self.byteCount)
        self.writeHeader(into: &buffer)
        if let results = self.results {
            buffer.writeImmutableBuffer(results)
        }
        return buffer
    }
}

/// A bounded LRU cache of in-progress and completed non-idempotent calls.
final class DuplicateRequestCache: Sendable {
    enum Lookup: Sendable {
        /// First time seen: now recorded as in progress; execute it and call `complete`.
        case new
        /// The original is still executing: drop the retransmission, the original's reply will come.
        case inProgress
        /// Completed before: send this reply again.
        case replay(RPCReplyMessage)
    }

    private enum Entry: Sendable {
        case inProgress
        case done(RPCReplyMessage)
    }

    private struct State: Sendable {
        var entries: [DuplicateRequestKey: (entry: Entry, generation: UInt64)] = [:]
        /// Recency order, oldest first; an item is stale when its generation is not the entry's.
        var order = CircularBuffer<(key: DuplicateRequestKey, generation: UInt64)>()
        var nextGeneration: UInt64 = 0
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    var count: Int { self.state.withLock { $0.entries.count } }

    func begin(_ key: DuplicateRequestKey) -> Lookup {
        guard self.capacity > 0 else { return .new }
        return self.state.withLock { state in
            if let existing = state.entries[key] {
                Self.touch(key, entry: existing.entry, in: &state)
                switch existing.entry {
                case .inProgress: return .inProgress
                case .done(let reply): return .replay(reply)
                }
            }
            Self.touch(key, entry: .inProgress, in: &state)
            self.evict(&state)
            return .new
        }
    }

    /// Records the reply of a call `begin` returned `.new` for; `nil` forgets the call (nothing
    /// was sent, so a retransmission must be executed).
    func complete(_ key: DuplicateRequestKey, reply: RPCReplyMessage?) {
        guard self.capacity > 0 else { return }
        self.state.withLock { state in
            guard let reply else {
                state.entries[key] = nil
                return
            }
            Self.touch(key, entry: .done(reply), in: &state)
            self.evict(&state)
        }
    }

    private static func touch(_ key: DuplicateRequestKey, entry: Entry, in state: inout State) {
        let generation = state.nextGeneration
        state.nextGeneration &+= 1
        state.entries[key] = (entry, generation)
        state.order.append((key, generation))
    }

    private func evict(_ state: inout State) {
        while state.entries.count > self.capacity, let oldest = state.order.popFirst() {
            if state.entries[oldest.key]?.generation == oldest.generation {
                state.entries[oldest.key] = nil
            }
        }
        // Stale order items pile up when entries are touched repeatedly: compact.
        if state.order.count > 4 * self.capacity + 64 {
            var compacted = CircularBuffer<(key: DuplicateRequestKey, generation: UInt64)>(
                initialCapacity: state.entries.count
            )
            for item in state.order where state.entries[item.key]?.generation == item.generation {
                compacted.append(item)
            }
            state.order = compacted
        }
    }
}
