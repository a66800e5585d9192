import Basics
import Foundation
import NIOCore
import SunRPC

/// `strata serve --trace FILE`: every NFS and MOUNT call with its arguments and its reply, as
/// the server saw them, one line each (the call log format, Docs/BOOT-TRACE.md). What a client
/// did is reconstructed offline from these bytes (`strata trace convert`): the server records,
/// it does not interpret, so the hook costs a copy and a write per call when tracing, and
/// nothing when not (the programs are then not wrapped at all).
///
/// Line: `START_US END_US PEER PROG VERS PROC XID REPLY ARGS REPLY_BODY`, times in microseconds
/// since the trace opened (monotonic clock; the call's start and end on the server, so two
/// calls overlapped when their intervals do; a held reply ends when it left), PEER `ip:port` of the connection, REPLY `ok` or
/// the RPC refusal (`garbage`, `procunavail`, `syserr`, `auth`, `drop`), ARGS and REPLY_BODY
/// base64 (`-` when empty). Large payloads are cut (WRITE data, READ data): the converter
/// needs their headers, not the bytes.
public final class CallTrace: Sendable {
    private let file: Locked<FileHandle?>
    private let origin: ContinuousClock.Instant
    public let path: String

    /// Opens (truncates) `path`; fails with a message naming the path.
    public init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let handle = FileHandle(forWritingAtPath: path)
        else {
            throw StartupError(
                message: "cannot write the call trace --trace \(path): check the directory exists and is writable")
        }
        let stamp = ISO8601DateFormatter().string(from: Date())
        handle.write(Data("# strata call trace 1 opened \(stamp)\n".utf8))
        self.file = Locked(handle)
        self.origin = ContinuousClock.now
        self.path = path
    }

    /// Microseconds since the trace opened.
    func now() -> Int64 {
        let elapsed = ContinuousClock.now - self.origin
        return elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
    }

    func record(
        start: Int64, end: Int64, call: RPCCallContext, arguments: ByteBuffer, argumentLimit: Int, reply: RPCReply,
        replyLimit: Int
    ) {
        let outcome: String
        var body = ByteBuffer()
        switch reply {
        case .success(let result): (outcome, body) = ("ok", result)
        case .successFromFile(let results): (outcome, body) = ("ok", results.joined() ?? results.head)
        case .garbageArguments: outcome = "garbage"
        case .procedureUnavailable: outcome = "procunavail"
        case .systemError: outcome = "syserr"
        case .authError: outcome = "auth"
        case .drop: outcome = "drop"
        }
        let peer = "\(call.remoteAddress.ipAddress ?? "unknown"):\(call.remoteAddress.port ?? 0)"
        let line =
            "\(start) \(end) \(peer) \(call.program) \(call.version) \(call.procedure) \(call.xid) \(outcome) "
            + "\(Self.base64(arguments, limit: argumentLimit)) \(Self.base64(body, limit: replyLimit))\n"
        self.file.withLock { $0?.write(Data(line.utf8)) }
    }

    static func base64(_ buffer: ByteBuffer, limit: Int) -> String {
        let bytes = buffer.getBytes(at: buffer.readerIndex, length: min(buffer.readableBytes, limit)) ?? []
        return bytes.isEmpty ? "-" : Data(bytes).base64EncodedString()
    }

    /// Flushes and closes the file (server shutdown); later calls are not recorded.
    public func close() {
        self.file.withLock { handle in
            try? handle?.synchronize()
            try? handle?.close()
            handle = nil
        }
    }
}

/// Wraps a program so that `trace` records each of its calls. Installed only with --trace.
struct TracedProgram: ProgramWrapper {
    let inner: any RPCProgramHandler
    let trace: CallTrace
    /// How many bytes of a procedure's arguments and reply are kept (WRITE's data and READ's
    /// are not needed to replay a trace).
    let argumentLimit: @Sendable (UInt32) -> Int
    let replyLimit: @Sendable (UInt32) -> Int

    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        let start = self.trace.now()
        let original = arguments
        let reply = self.inner.handle(call, arguments: &arguments)
        // A held reply (a change waiting for its flush) is recorded when it leaves, as what it leaves as: the call's
        // interval then covers the wait the client saw, and a failed flush shows as the error it got.
        RPCWorker.whenReplyLeaves(reply) { left in
            self.trace.record(
                start: start, end: self.trace.now(), call: call, arguments: original,
                argumentLimit: self.argumentLimit(call.procedure), reply: left,
                replyLimit: self.replyLimit(call.procedure))
        }
        return reply
    }
}

extension TracedProgram {
    /// NFSv3: WRITE arguments and READ replies cut after their headers (a 64-byte handle,
    /// offsets, counts, attributes), everything else whole up to 1 MiB.
    static func nfs(_ inner: any RPCProgramHandler, trace: CallTrace) -> TracedProgram {
        TracedProgram(
            inner: inner, trace: trace,
            argumentLimit: { $0 == 7 ? 256 : 1 << 20 },
            replyLimit: { $0 == 6 ? 256 : 1 << 20 })
    }

    static func mount(_ inner: any RPCProgramHandler, trace: CallTrace) -> TracedProgram {
        TracedProgram(inner: inner, trace: trace, argumentLimit: { _ in 1 << 20 }, replyLimit: { _ in 1 << 20 })
    }
}
