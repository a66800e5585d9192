import NIOCore
import NIOPosix
import SunRPC
import Synchronization
import XDR

#if canImport(Glibc)
import Glibc
#endif

/// Why an `RPCClient` operation failed.
public struct RPCClientError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case invalidAddress
        case socketFailed
        case bindFailed
        case connectFailed
        case sendFailed
        case receiveFailed
        /// No (matching) reply within the timeout.
        case timedOut
        /// The server closed the connection.
        case connectionClosed
        /// The reply could not be parsed.
        case malformedReply
    }

    public var code: Code
    public var message: String

    public var description: String { "RPC client: \(self.message)" }
}

/// A reply received by `RPCClient`: its xid, status, and (for `.success`) the result bytes.
public struct RPCCallReply: Sendable {
    public var xid: UInt32
    public var status: RPCReplyStatus
    public var body: ByteBuffer
}

/// The local port an `RPCClient` binds before connecting.
public enum RPCSourcePort: Sendable, Equatable {
    /// Any port the system picks.
    case any
    /// A free port below 1024 (as a root NFS client uses; needs privilege).
    case privileged
    case fixed(Int)
}

/// A small blocking ONC RPC client for tests and tools: TCP (record marking) or UDP, AUTH_NONE
/// or AUTH_SYS, optional local source address and port, every wait bounded by `timeout`.
///
/// Not for event loops: every call blocks the calling thread.
public final class RPCClient: Sendable {
    public let transport: RPCTransport
    public let remoteAddress: SocketAddress
    /// The address this client's socket is bound to.
    public let localAddress: SocketAddress
    public let credential: RPCCredential
    public let timeout: Duration
    /// UDP: resend the call (same xid) when no reply came for this long.
    public let udpRetransmitInterval: Duration

    private struct State {
        var fd: Int32
        var nextXID: UInt32
        var pending = ByteBuffer()
        var decoder: RecordMarkingDecoder
    }
    private let state: Mutex<State>

    /// Opens a socket and, for TCP, connects.
    ///
    /// - Parameters:
    ///   - host: numeric IPv4 or IPv6 address of the server, or "localhost".
    ///   - localHost: source address to bind (e.g. "127.0.0.2"), or nil for any.
    ///   - localPort: source port.
    ///   - maxRecordBytes: the largest reply record accepted (TCP).
    public init(
        host: String,
        port: Int,
        transport: RPCTransport,
        localHost: String? = nil,
        localPort: RPCSourcePort = .any,
        credential: RPCCredential = .none,
        timeout: Duration = .seconds(5),
        udpRetransmitInterval: Duration = .seconds(1),
        maxRecordBytes: Int = 16 << 20
    ) throws(RPCClientError) {
        let host = host == "localhost" ? "127.0.0.1" : host
        let remote: SocketAddress
        do {
            remote = try SocketAddress(ipAddress: host, port: port)
        } catch {
            throw RPCClientError(code: .invalidAddress, message: "\(host) is not a numeric IP address")
        }
        let family = remote.protocol.rawValue
        let fd = socket(family, transport == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else {
            throw RPCClientError(code: .socketFailed, message: "socket(): \(String(cString: strerror(errno)))")
        }
        var ok = false
        defer { if !ok { Glibc.close(fd) } }

        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        // Bounded sends: a server that stops reading makes `send` fail with EAGAIN after this.
        let (seconds, attoseconds) = timeout.components
        var sendTimeout = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
        let anyHost = family == AF_INET6 ? "::" : "0.0.0.0"
        let bindHost = localHost ?? anyHost
        func tryBind(_ port: Int) throws(RPCClientError) -> Bool {
            guard let local = try? SocketAddress(ipAddress: bindHost, port: port) else {
                throw RPCClientError(code: .invalidAddress, message: "\(bindHost) is not a numeric IP address")
            }
            let rc = local.withSockAddr { Glibc.bind(fd, $0, socklen_t($1)) }
            if rc == 0 { return true }
            if errno == EADDRINUSE { return false }
            throw RPCClientError(
                code: .bindFailed,
                message: "bind(\(bindHost) port \(port)): \(String(cString: strerror(errno)))"
            )
        }
        switch localPort {
        case .any:
            if localHost != nil {
                _ = try tryBind(0)
            }
        case .fixed(let port):
            guard try tryBind(port) else {
                throw RPCClientError(code: .bindFailed, message: "bind(\(bindHost) port \(port)): address in use")
            }
        case .privileged:
            var bound = false
            for port in stride(from: 1023, through: 600, by: -1) where try tryBind(port) {
                bound = true
                break
            }
            guard bound else {
                throw RPCClientError(code: .bindFailed, message: "no free privileged port on \(bindHost)")
            }
        }

        if transport == .tcp {
            try Self.connect(fd: fd, to: remote, timeout: timeout)
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        } else {
            // A connected UDP socket only receives from the server.
            let rc = remote.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
            guard rc == 0 else {
                throw RPCClientError(
                    code: .connectFailed, message: "connect(\(remote)): \(String(cString: strerror(errno)))")
            }
        }

        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else {
            throw RPCClientError(code: .socketFailed, message: "getsockname(): \(String(cString: strerror(errno)))")
        }
        self.localAddress = Self.socketAddress(storage)
        self.transport = transport
        self.remoteAddress = remote
        self.credential = credential
        self.timeout = timeout
        self.udpRetransmitInterval = udpRetransmitInterval
        self.state = Mutex(
            State(
                fd: fd,
                nextXID: UInt32.random(in: 1...UInt32.max / 2),
                decoder: RecordMarkingDecoder(maxRecordBytes: maxRecordBytes)
            )
        )
        ok = true
    }

    deinit {
        self.state.withLock { state in
            if state.fd >= 0 {
                Glibc.close(state.fd)
                state.fd = -1
            }
        }
    }

    /// Closes the socket; later calls fail.
    public func close() {
        self.state.withLock { state in
            if state.fd >= 0 {
                Glibc.close(state.fd)
                state.fd = -1
            }
        }
    }

    /// The local port (convenience for `localAddress.port`).
    public var localPort: Int { self.localAddress.port ?? 0 }

    /// Calls a procedure and waits for its reply.
    ///
    /// - Parameters:
    ///   - arguments: the XDR-encoded arguments.
    ///   - credential: overrides the client's credential for this call.
    ///   - xid: a fixed xid (to test retransmissions); default: the next one.
    public func call(
        program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer = ByteBuffer(),
        credential: RPCCredential? = nil, xid: UInt32? = nil
    ) throws(RPCClientError) -> RPCCallReply {
        let deadline = ContinuousClock.now + self.timeout
        let message = try self.sendCall(
            program: program, version: version, procedure: procedure, arguments: arguments, credential: credential,
            xid: xid)
        var nextSend = ContinuousClock.now + self.udpRetransmitInterval
        while true {
            let waitUntil = self.transport == .udp ? min(deadline, nextSend) : deadline
            if let reply = try self.receiveReply(until: waitUntil, deadline: deadline), reply.xid == message.xid {
                return reply
            }
            let now = ContinuousClock.now
            if now >= deadline {
                throw RPCClientError(
                    code: .timedOut,
                    message:
                        "no reply to xid \(message.xid) (program \(program) version \(version) procedure \(procedure)) "
                        + "from \(self.remoteAddress) within \(self.timeout)"
                )
            }
            if self.transport == .udp, now >= nextSend {
                try self.sendMessage(message.buffer)
                nextSend = now + self.udpRetransmitInterval
            }
        }
    }

    /// Sends a call without waiting (for pipelining on TCP); returns its xid.
    @discardableResult
    public func send(
        program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer = ByteBuffer(),
        credential: RPCCredential? = nil, xid: UInt32? = nil
    ) throws(RPCClientError) -> UInt32 {
        try self.sendCall(
            program: program, version: version, procedure: procedure, arguments: arguments, credential: credential,
            xid: xid
        ).xid
    }

    /// Waits for the next reply, whatever its xid.
    public func receiveReply() throws(RPCClientError) -> RPCCallReply {
        let deadline = ContinuousClock.now + self.timeout
        while true {
            if let reply = try self.receiveReply(until: deadline, deadline: deadline) {
                return reply
            }
            if ContinuousClock.now >= deadline {
                throw RPCClientError(
                    code: .timedOut, message: "no reply from \(self.remoteAddress) within \(self.timeout)")
            }
        }
    }

    /// Sends bytes as they are: on TCP the caller does the record marking, on UDP it is one
    /// datagram.
    public func sendRaw(_ bytes: ByteBuffer) throws(RPCClientError) {
        try self.writeAll(bytes)
    }

    /// Sends `message` as one record (TCP, one fragment) or one datagram (UDP).
    public func sendMessage(_ message: ByteBuffer) throws(RPCClientError) {
        if self.transport == .tcp {
            var framed = ByteBuffer()
            framed.writeInteger(RecordMarking.header(length: message.readableBytes), endianness: .big)
            var message = message
            framed.writeBuffer(&message)
            try self.writeAll(framed)
        } else {
            try self.writeAll(message)
        }
    }

    /// Receives the next record (TCP) or datagram (UDP), undecoded.
    public func receiveRecord() throws(RPCClientError) -> ByteBuffer {
        let deadline = ContinuousClock.now + self.timeout
        guard let record = try self.receiveRecord(until: deadline) else {
            throw RPCClientError(
                code: .timedOut, message: "nothing received from \(self.remoteAddress) within \(self.timeout)")
        }
        return record
    }

    /// True when the server closed (or reset) the TCP connection within `timeout`; bytes that
    /// arrive meanwhile are discarded.
    public func waitForClose(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        let fd = self.state.withLock { $0.fd }
        guard fd >= 0 else { return true }
        var scratch = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            guard Self.poll(fd: fd, events: Int16(POLLIN), until: deadline) else { return false }
            let received = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if received == 0 { return true }
            if received < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return true
            }
        }
        return false
    }

    // MARK: Async conveniences

    /// `call` run on `NIOThreadPool.singleton`, so that async code (Swift Testing tests) does
    /// not block a thread of the cooperative pool.
    public func callAsync(
        program: UInt32,
        version: UInt32,
        procedure: UInt32,
        arguments: ByteBuffer = ByteBuffer(),
        credential: RPCCredential? = nil,
        xid: UInt32? = nil
    ) async throws -> RPCCallReply {
        try await NIOThreadPool.singleton.runIfActive {
            try self.call(
                program: program,
                version: version,
                procedure: procedure,
                arguments: arguments,
                credential: credential,
                xid: xid
            )
        }
    }

    /// Runs `open` (an `RPCClient(...)`, whose connecting may block up to its `timeout`) on `NIOThreadPool.singleton`.
    public static func connect(_ open: @escaping @Sendable () throws -> RPCClient) async throws -> RPCClient {
        try await NIOThreadPool.singleton.runIfActive { try open() }
    }

    // MARK: Internals

    /// Encodes a call (the next xid unless one is given) and sends it; returns its xid and bytes, for a resend.
    private func sendCall(
        program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer, credential: RPCCredential?,
        xid: UInt32?
    ) throws(RPCClientError) -> (xid: UInt32, buffer: ByteBuffer) {
        let xid =
            xid
            ?? self.state.withLock { state in
                state.nextXID &+= 1
                return state.nextXID
            }
        let buffer = Self.callMessage(
            xid: xid, program: program, version: version, procedure: procedure,
            credential: credential ?? self.credential, arguments: arguments)
        try self.sendMessage(buffer)
        return (xid, buffer)
    }

    /// A call message: the RPC header (`rpcVersion` other than 2 only to test a server's refusal), then `arguments`.
    public static func callMessage(
        xid: UInt32, program: UInt32, version: UInt32, procedure: UInt32, credential: RPCCredential,
        rpcVersion: UInt32 = RPCConstants.rpcVersion, arguments: ByteBuffer
    ) -> ByteBuffer {
        var buffer = ByteBuffer()
        RPCMessageCodec.writeCallHeader(
            xid: xid, program: program, version: version, procedure: procedure, credential: credential,
            rpcVersion: rpcVersion, into: &buffer)
        var arguments = arguments
        buffer.writeBuffer(&arguments)
        return buffer
    }

    private func writeAll(_ bytes: ByteBuffer) throws(RPCClientError) {
        let fd = self.state.withLock { $0.fd }
        guard fd >= 0 else { throw RPCClientError(code: .connectionClosed, message: "client is closed") }
        var offset = 0
        let total = bytes.readableBytes
        let deadline = ContinuousClock.now + self.timeout
        while offset < total {
            let sent = bytes.withUnsafeReadableBytes { raw in
                Glibc.send(fd, raw.baseAddress.map { $0 + offset }, total - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if ContinuousClock.now < deadline {
                        _ = Self.poll(fd: fd, events: Int16(POLLOUT), until: deadline)
                        continue
                    }
                    throw RPCClientError(
                        code: .timedOut,
                        message: "send to \(self.remoteAddress) blocked for \(self.timeout): the server is not reading"
                    )
                }
                throw RPCClientError(
                    code: .sendFailed, message: "send to \(self.remoteAddress): \(String(cString: strerror(errno)))")
            }
            offset += sent
            if self.transport == .udp { break }
        }
    }

    /// Receives one record or datagram by `until`; nil when none came in time.
    private func receiveRecord(until: ContinuousClock.Instant) throws(RPCClientError) -> ByteBuffer? {
        let fd = self.state.withLock { $0.fd }
        guard fd >= 0 else { throw RPCClientError(code: .connectionClosed, message: "client is closed") }
        if self.transport == .tcp {
            // A record may already be buffered.
            if let record = try self.decodeBuffered() { return record }
        }
        var scratch = [UInt8](repeating: 0, count: 65536 + 1024)
        while true {
            guard Self.poll(fd: fd, events: Int16(POLLIN), until: until) else { return nil }
            let received = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if received < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if self.transport == .udp && errno == ECONNREFUSED { continue }
                throw RPCClientError(
                    code: .receiveFailed,
                    message: "recv from \(self.remoteAddress): \(String(cString: strerror(errno)))")
            }
            if self.transport == .udp {
                var buffer = ByteBuffer()
                buffer.writeBytes(scratch[0..<received])
                return buffer
            }
            if received == 0 {
                throw RPCClientError(code: .connectionClosed, message: "\(self.remoteAddress) closed the connection")
            }
            _ = self.state.withLock { $0.pending.writeBytes(scratch[0..<received]) }
            if let record = try self.decodeBuffered() { return record }
        }
    }

    private func decodeBuffered() throws(RPCClientError) -> ByteBuffer? {
        let result: Result<ByteBuffer?, RecordMarkingError> = self.state.withLock { state in
            do throws(RecordMarkingError) {
                let record = try state.decoder.decode(buffer: &state.pending)
                state.pending.discardReadBytes()
                return .success(record)
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let record): return record
        case .failure(let error): throw RPCClientError(code: .malformedReply, message: "\(error)")
        }
    }

    private func receiveReply(
        until: ContinuousClock.Instant,
        deadline: ContinuousClock.Instant
    ) throws(RPCClientError) -> RPCCallReply? {
        guard var record = try self.receiveRecord(until: until) else { return nil }
        return try Self.parseReply(&record)
    }

    /// Parses a reply message (RFC 5531 §9).
    public static func parseReply(_ record: inout ByteBuffer) throws(RPCClientError) -> RPCCallReply {
        do {
            let header = try RPCReplyHeader.read(from: &record)
            return RPCCallReply(xid: header.xid, status: header.status, body: record)
        } catch {
            throw RPCClientError(code: .malformedReply, message: "malformed reply: \(error)")
        }
    }

    private static func connect(fd: Int32, to remote: SocketAddress, timeout: Duration) throws(RPCClientError) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        let rc = remote.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
        if rc == 0 { return }
        guard errno == EINPROGRESS else {
            throw RPCClientError(
                code: .connectFailed, message: "connect(\(remote)): \(String(cString: strerror(errno)))")
        }
        guard Self.poll(fd: fd, events: Int16(POLLOUT), until: .now + timeout) else {
            throw RPCClientError(code: .timedOut, message: "connect(\(remote)) timed out after \(timeout)")
        }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else {
            throw RPCClientError(
                code: .connectFailed, message: "connect(\(remote)): \(String(cString: strerror(error)))")
        }
    }

    /// Waits for `events` until `until`; false on timeout.
    private static func poll(fd: Int32, events: Int16, until: ContinuousClock.Instant) -> Bool {
        while true {
            let remaining = until - ContinuousClock.now
            if remaining <= .zero { return false }
            let (seconds, attoseconds) = remaining.components
            let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let rc = Glibc.poll(&pfd, 1, milliseconds)
            if rc > 0 { return true }
            if rc < 0 && errno != EINTR { return true }
        }
    }

    private static func socketAddress(_ storage: sockaddr_storage) -> SocketAddress {
        var storage = storage
        if storage.ss_family == sa_family_t(AF_INET6) {
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
            }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        }
    }
}
