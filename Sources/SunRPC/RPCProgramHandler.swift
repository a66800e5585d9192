import Glibc
import Logging
import NIOCore

/// What the server knows about a call when it hands it to a program.
public struct RPCCallContext: Sendable {
    public var xid: UInt32
    public var program: UInt32
    public var version: UInt32
    public var procedure: UInt32
    public var credential: RPCCredential
    /// The client's address (for UDP the datagram's source, for TCP the connection's peer).
    public var remoteAddress: SocketAddress
    /// The address the call arrived on, where known (for a UDP socket bound to a wildcard
    /// address this is the wildcard).
    public var localAddress: SocketAddress?
    public var transport: RPCTransport
    /// The server's logger, without this call's metadata.
    private var serverLogger: Logger

    /// A logger carrying the metadata `xid`, `client`, `prog`, `vers` and `proc`. Built when
    /// asked for (most calls never log), with values formatted only when a line is written.
    public var logger: Logger {
        get {
            var logger = self.serverLogger
            logger[metadataKey: "xid"] = .stringConvertible(self.xid)
            logger[metadataKey: "client"] = .stringConvertible(RPCClientName(address: self.remoteAddress))
            logger[metadataKey: "prog"] = .stringConvertible(self.program)
            logger[metadataKey: "vers"] = .stringConvertible(self.version)
            logger[metadataKey: "proc"] = .stringConvertible(self.procedure)
            return logger
        }
        set { self.serverLogger = newValue }
    }

    public init(
        xid: UInt32,
        program: UInt32,
        version: UInt32,
        procedure: UInt32,
        credential: RPCCredential,
        remoteAddress: SocketAddress,
        localAddress: SocketAddress?,
        transport: RPCTransport,
        logger: Logger
    ) {
        self.xid = xid
        self.program = program
        self.version = version
        self.procedure = procedure
        self.credential = credential
        self.remoteAddress = remoteAddress
        self.localAddress = localAddress
        self.transport = transport
        self.serverLogger = logger
    }

    /// The client's IP address as text ("192.0.2.7", "::1"), or "" for a non-IP peer.
    public var remoteIP: String { self.remoteAddress.ipAddress ?? "" }
    /// The client's source port (below 1024 for a "secure" client), or 0 for a non-IP peer.
    public var remotePort: Int { self.remoteAddress.port ?? 0 }
}

/// "ip:port" of a client, formatted only when logged.
struct RPCClientName: CustomStringConvertible, Sendable {
    let address: SocketAddress
    var description: String { "\(self.address.ipAddress ?? "\(self.address)"):\(self.address.port ?? 0)" }
}

/// A program's answer to a call.
public enum RPCReply: Sendable {
    /// SUCCESS with the XDR-encoded results.
    case success(ByteBuffer)
    /// SUCCESS with results whose middle part is sent from a file (`RPCFileResults`). Over UDP the bytes are read
    /// into the datagram.
    case successFromFile(RPCFileResults)
    /// PROC_UNAVAIL.
    case procedureUnavailable
    /// GARBAGE_ARGS: the arguments could not be decoded.
    case garbageArguments
    /// SYSTEM_ERR.
    case systemError
    /// MSG_DENIED / AUTH_ERROR with this status (e.g. `.tooWeak` for a flavor the program does
    /// not accept).
    case authError(AuthStat)
    /// Send nothing (the client will retransmit or give up).
    case drop
}

/// Results of which a range of bytes is sent straight from a file (sendfile), not copied through the server's
/// memory: `head`, then `count` bytes of `file` at `offset`, then `tail` (an NFS READ reply: status, attributes and
/// lengths; the data; the XDR padding). The program promises the range is there when it answers; if the file has
/// fewer bytes by the time they are sent, the connection is closed rather than a reply sent whose length disagrees
/// with its bytes (the client sends the call again on a new connection).
public struct RPCFileResults: Sendable, Equatable {
    public var head: ByteBuffer
    public var file: RPCReplyFile
    public var offset: Int
    public var count: Int
    public var tail: ByteBuffer

    public init(head: ByteBuffer, file: RPCReplyFile, offset: Int, count: Int, tail: ByteBuffer) {
        self.head = head
        self.file = file
        self.offset = offset
        self.count = count
        self.tail = tail
    }

    /// All the bytes of the results.
    public var byteCount: Int { self.head.readableBytes + self.count + self.tail.readableBytes }

    public static func == (a: RPCFileResults, b: RPCFileResults) -> Bool {
        a.head == b.head && a.file === b.file && a.offset == b.offset && a.count == b.count && a.tail == b.tail
    }

    /// The results as one buffer, the file's bytes read into it (a datagram, a test); nil when the file no
    /// longer holds the whole range.
    public func joined(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer? {
        var buffer = allocator.buffer(capacity: self.byteCount)
        buffer.writeImmutableBuffer(self.head)
        var complete = true
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: self.count) { space in
            var done = 0
            while done < self.count {
                let got = pread(
                    self.file.descriptor, space.baseAddress! + done, self.count - done, off_t(self.offset + done))
                if got < 0, errno == EINTR { continue }
                if got <= 0 { break }
                done += got
            }
            complete = done == self.count
            return done
        }
        guard complete else { return nil }
        buffer.writeImmutableBuffer(self.tail)
        return buffer
    }
}

/// A descriptor a reply's bytes are sent from, owned by the reply: closed when the last reference to it goes (its
/// bytes were sent, or the reply was dropped).
public final class RPCReplyFile: Sendable {
    public let descriptor: CInt

    public init(takingOwnershipOf descriptor: CInt) {
        self.descriptor = descriptor
    }

    deinit {
        close(self.descriptor)
    }
}

/// An RPC program (e.g. NFS 100003, MOUNT 100005) served by `RPCServer`.
///
/// Handlers are called on a thread of a bounded `NIOThreadPool`, where they may block (file
/// system, SQLite), except for the procedures `isNonBlocking` names, which run on the event
/// loop. Calls of one connection may run in parallel.
public protocol RPCProgramHandler: Sendable {
    /// The program number.
    var program: UInt32 { get }
    /// The versions served; others are answered PROG_MISMATCH with this range.
    var versions: ClosedRange<UInt32> { get }
    /// True for procedures whose retransmission must be answered from the duplicate request
    /// cache rather than executed again (NFS REMOVE, RENAME, CREATE...).
    func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool
    /// True for procedures that never block and finish in microseconds (NULL, in-memory
    /// lookups): they run on the event loop that read the call, saving the two thread hops to
    /// the pool and back. Anything that touches the file system, a database or a lock held
    /// across I/O must answer false. Default: NULL only.
    func isNonBlocking(version: UInt32, procedure: UInt32) -> Bool
    /// True for procedures that can often be answered at once from memory (NFS GETATTR of an
    /// object the server has cached): the event loop first offers them to `handleInline`, and
    /// only those it declines go to the pool. Never true for a non-idempotent procedure.
    /// Default: none.
    func mayAnswerInline(version: UInt32, procedure: UInt32) -> Bool
    /// Answers the call here, on the event loop, if that needs no blocking step (no lock held
    /// across I/O, no directory walk, no database); nil otherwise, and then `handle` runs it on
    /// the pool as usual. Asked only for the procedures `mayAnswerInline` names. Must not
    /// consume `arguments` or have any effect when it declines.
    func handleInline(_ call: RPCCallContext, arguments: ByteBuffer) -> RPCReply?
    /// Executes one call. `arguments` holds the XDR-encoded arguments (reader index at the
    /// first byte). Return `.garbageArguments` when they cannot be decoded and
    /// `.procedureUnavailable` for an unknown procedure. Procedure 0 (NULL) is the handler's
    /// too: answer `.success(ByteBuffer())`.
    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply
}

extension RPCProgramHandler {
    public func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool { false }
    public func isNonBlocking(version: UInt32, procedure: UInt32) -> Bool { procedure == 0 }
    public func mayAnswerInline(version: UInt32, procedure: UInt32) -> Bool { false }
    public func handleInline(_ call: RPCCallContext, arguments: ByteBuffer) -> RPCReply? { nil }
}
