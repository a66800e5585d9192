import Basics
import NIOCore

// The duplicate request cache, after Linux knfsd (fs/nfsd/nfscache.c): a retransmission is
// recognised by client address, xid, program/version/procedure and a checksum of the first
// bytes of the arguments (knfsd: RC_CSUMLEN = 256), plus the argument length. A UDP client is
// known by IP and port; a TCP client by IP alone, since it may retransmit on a new connection
// from another port after a reconnect.

/// Identifies one call for the duplicate request cache.
struct DuplicateRequestKey: Hashable, Sendable {
    var client: Client
    var xid: UInt32
    var program: UInt32
    var version: UInt32
    var procedure: UInt32
    var argumentBytes: Int
    var argumentChecksum: UInt32

    static let checksummedBytes = 256

    /// The client as its address bytes, not as text: every non-idempotent call makes a key and hashes it twice, and
    /// formatting the address into a string cost more than the rest of the cache.
    struct Client: Hashable, Sendable {
        var isUDP: Bool
        /// An IPv4 address in the low bits, an IPv6 address in both; a Unix socket's path hash.
        var high: UInt64
        var low: UInt64
        /// UDP only: a TCP client may retransmit on a new connection from another port.
        var port: UInt16
    }

    init(
        remoteAddress: SocketAddress,
        transport: RPCTransport,
        xid: UInt32,
        program: UInt32,
        version: UInt32,
        procedure: UInt32,
        arguments: ByteBuffer
    ) {
        let isUDP = transport == .udp
        let port = isUDP ? UInt16(truncatingIfNeeded: remoteAddress.port ?? 0) : 0
        var client = Client(isUDP: isUDP, high: 0, low: 0, port: port)
        switch remoteAddress {
        case .v4(let address):
            client.low = UInt64(address.address.sin_addr.s_addr)
        case .v6(let address):
            withUnsafeBytes(of: address.address.sin6_addr) { bytes in
                client.high = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
                client.low = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            }
        case .unixDomainSocket:
            var hasher = Hasher()
            hasher.combine("\(remoteAddress)")
            client.high = UInt64(bitPattern: Int64(hasher.finalize()))
        }
        self.client = client
        self.xid = xid
        self.program = program
        self.version = version
        self.procedure = procedure
        self.argumentBytes = arguments.readableBytes
        self.argumentChecksum = arguments.withUnsafeReadableBytes { bytes in
            FNV1a32.hash(bytes.prefix(Self.checksummedBytes))
        }
    }
}

/// A reply message without record mark: the RPC reply header (kept as its fields, written
/// straight into the outgoing buffer) and, for SUCCESS, the results.
struct RPCReplyMessage: Sendable {
    var xid: UInt32
    var body: RPCReplyBody
    var results: ByteBuffer?
    /// Results sent partly from a file (then `results` is nil).
    var fileResults: RPCFileResults? = nil

    var headerByteCount: Int { RPCMessageCodec.replyHeaderByteCount(self.body) }

    var byteCount: Int {
        self.headerByteCount + (self.results?.readableBytes ?? 0) + (self.fileResults?.byteCount ?? 0)
    }

    func writeHeader(into buffer: inout ByteBuffer) {
        RPCMessageCodec.writeReplyHeader(xid: self.xid, body: self.body, into: &buffer)
    }

    /// Header and results in one buffer (for a datagram); nil when results from a file can no longer be read whole.
    func joined(allocator: ByteBufferAllocator) -> ByteBuffer? {
        var buffer = allocator.buffer(capacity: self.byteCount)
        self.writeHeader(into: &buffer)
        if let results = self.results {
            buffer.writeImmutableBuffer(results)
        }
        if let fileResults = self.fileResults {
            guard let results = fileResults.joined(allocator: allocator) else { return nil }
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

    let capacity: Int
    // The house lock (`Synchronization.Mutex` spins): held replies are recorded here by the thread whose flush
    // released them while the event loop looks up new calls.
    private let entries: Locked<LRUMap<DuplicateRequestKey, Entry>>

    init(capacity: Int) {
        self.capacity = max(0, capacity)
        self.entries = Locked(LRUMap(capacity: self.capacity))
    }

    var count: Int { self.entries.withLock { $0.count } }

    func begin(_ key: DuplicateRequestKey) -> Lookup {
        guard self.capacity > 0 else { return .new }
        return self.entries.withLock { entries in
            switch entries.value(for: key) {
            case .inProgress: return .inProgress
            case .done(let reply): return .replay(reply)
            case nil:
                entries.set(.inProgress, for: key)
                return .new
            }
        }
    }

    /// Records the reply of a call `begin` returned `.new` for; `nil` forgets the call (nothing
    /// was sent, so a retransmission must be executed).
    func complete(_ key: DuplicateRequestKey, reply: RPCReplyMessage?) {
        guard self.capacity > 0 else { return }
        self.entries.withLock { entries in
            if let reply {
                entries.set(.done(reply), for: key)
            } else {
                entries.removeValue(for: key)
            }
        }
    }
}
