import Foundation
import Logging
import NIOCore
import NIOPosix
import SunRPCClient
import Synchronization
import XDR

@testable import SunRPC

/// A program for tests, number 0x2000_0101 (the "defined by user" range of RFC 5531 §7.3),
/// versions 1 and 2.
final class TestProgram: RPCProgramHandler {
    static let number: UInt32 = 0x2000_0101

    enum Procedure: UInt32, CaseIterable {
        case null = 0
        /// opaque<1024> → the same opaque.
        case echo = 1
        /// uint32 milliseconds → sleeps that long (bounded), then returns the argument.
        case sleep = 2
        /// Non-idempotent: increments a counter and returns its new value.
        case increment = 3
        /// The same, declared idempotent.
        case incrementIdempotent = 4
        /// Returns uid, gid, group count, machine name of an AUTH_SYS credential; AUTH_TOOWEAK
        /// otherwise.
        case whoami = 5
        case systemError = 6
        case drop = 7
        /// Waits until the gate opens (bounded by `Gate.bound`), then returns the argument.
        case waitForGate = 8
        /// Opens the gate.
        case openGate = 9
        /// Non-idempotent: waits for the gate, then increments the counter.
        case incrementAfterGate = 10
        /// uint32 byte count (at most 4 MiB) → an opaque of that many bytes: a large reply to a
        /// small call, as NFS READ.
        case blob = 11
    }

    let program = TestProgram.number
    let versions: ClosedRange<UInt32> = 1...2
    let counter = Atomic<UInt32>(0)
    let gate = Gate()
    let calls = Atomic<Int>(0)

    func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool {
        procedure == Procedure.increment.rawValue || procedure == Procedure.incrementAfterGate.rawValue
    }

    func handle(_ call: RPCCallContext, arguments: inout ByteBuffer) -> RPCReply {
        self.calls.add(1, ordering: .relaxed)
        guard let procedure = Procedure(rawValue: call.procedure) else { return .procedureUnavailable }
        var results = ByteBuffer()
        switch procedure {
        case .null:
            return .success(results)
        case .echo:
            guard let bytes = try? arguments.readXDRVariableOpaque(maxLength: 1 << 20) else {
                return .garbageArguments
            }
            results.writeXDRVariableOpaque(bytes)
        case .sleep:
            guard let milliseconds = try? arguments.readXDRUInt32() else { return .garbageArguments }
            Thread.sleep(forTimeInterval: Double(min(milliseconds, 5000)) / 1000)
            results.writeXDR(milliseconds)
        case .increment, .incrementIdempotent:
            let value = self.counter.add(1, ordering: .relaxed).newValue
            results.writeXDR(value)
        case .whoami:
            guard case .sys(let parameters) = call.credential else { return .authError(.tooWeak) }
            results.writeXDR(parameters.uid)
            results.writeXDR(parameters.gid)
            results.writeXDRArray(parameters.groups) { $0.writeXDR($1) }
            results.writeXDRString(parameters.machineName)
            results.writeXDRString(call.remoteIP)
            results.writeXDR(UInt32(call.remotePort))
            results.writeXDRString(call.localAddress?.ipAddress ?? "")
            results.writeXDR(UInt32(call.localAddress?.port ?? 0))
        case .systemError:
            return .systemError
        case .drop:
            return .drop
        case .waitForGate:
            guard let value = try? arguments.readXDRUInt32() else { return .garbageArguments }
            _ = self.gate.wait(timeout: Gate.bound)
            results.writeXDR(value)
        case .openGate:
            self.gate.open()
        case .incrementAfterGate:
            _ = self.gate.wait(timeout: Gate.bound)
            results.writeXDR(self.counter.add(1, ordering: .relaxed).newValue)
        case .blob:
            guard let count = try? arguments.readXDRUInt32(), count <= 4 << 20 else { return .garbageArguments }
            results.writeXDR(count)
            results.writeRepeatingByte(0x5a, count: Int(count))
            results.writeRepeatingByte(0, count: (4 - Int(count) % 4) % 4)
        }
        return .success(results)
    }
}

/// A one-shot gate that blocking handlers wait on.
final class Gate: Sendable {
    /// How long a handler waits at most. Every test opens the gate itself; the bound only ends a
    /// failed test's handlers. It is not 10 s: in a full run the tests' threads can stall that
    /// long, the handlers then went on by themselves, and a test saw its calls finish early.
    static let bound: TimeInterval = 120

    private let condition = NSCondition()
    private let isOpen = Atomic<Bool>(false)

    func open() {
        self.condition.lock()
        self.isOpen.store(true, ordering: .sequentiallyConsistent)
        self.condition.broadcast()
        self.condition.unlock()
    }

    func wait(timeout: TimeInterval) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        self.condition.lock()
        defer { self.condition.unlock() }
        while !self.isOpen.load(ordering: .sequentiallyConsistent) {
            if !self.condition.wait(until: deadline) { return false }
        }
        return true
    }
}

/// A running `RPCServer` on a loopback address (127.0.0.1 unless given), port 0.
struct TestServer {
    let group: MultiThreadedEventLoopGroup
    let pool: NIOThreadPool
    let server: RPCServer
    let host: String
    let port: Int

    static func start(
        programs: [any RPCProgramHandler],
        configuration: RPCServerConfiguration = RPCServerConfiguration(),
        host: String = "127.0.0.1"
    ) async throws -> TestServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let pool = NIOThreadPool(numberOfThreads: 8)
        pool.start()
        var logger = Logger(label: "test.rpc")
        logger.logLevel =
            ProcessInfo.processInfo.environment["STRATA_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
        let server = RPCServer(
            programs: programs,
            configuration: configuration,
            group: group,
            threadPool: pool,
            logger: logger
        )
        let port = try await server.bind(host: host, port: 0)
        return TestServer(group: group, pool: pool, server: server, host: host, port: port)
    }

    func stop() async throws {
        try await self.server.shutdown()
        try await self.pool.shutdownGracefully()
        try await self.group.shutdownGracefully()
    }

    func client(
        _ transport: RPCTransport,
        credential: RPCCredential = .none,
        timeout: Duration = .seconds(5),
        localHost: String? = nil,
        localPort: RPCSourcePort = .any
    ) throws -> RPCClient {
        try RPCClient(
            host: self.host,
            port: self.port,
            transport: transport,
            localHost: localHost,
            localPort: localPort,
            credential: credential,
            timeout: timeout
        )
    }
}

/// Runs `body` against a fresh server and stops it whatever happens.
func withTestServer<T>(
    programs: [any RPCProgramHandler] = [TestProgram()],
    configuration: RPCServerConfiguration = RPCServerConfiguration(),
    _ body: (TestServer) async throws -> T
) async throws -> T {
    let server = try await TestServer.start(programs: programs, configuration: configuration)
    do {
        let result = try await body(server)
        try await server.stop()
        return result
    } catch {
        try? await server.stop()
        throw error
    }
}

func uint32Buffer(_ value: UInt32) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeXDR(value)
    return buffer
}

/// A call message as bytes, with optional tampering.
func callMessage(
    xid: UInt32,
    program: UInt32 = TestProgram.number,
    version: UInt32 = 1,
    procedure: UInt32 = 0,
    credential: RPCCredential = .none,
    rpcVersion: UInt32 = 2,
    arguments: ByteBuffer = ByteBuffer()
) -> ByteBuffer {
    RPCClient.callMessage(
        xid: xid, program: program, version: version, procedure: procedure, credential: credential,
        rpcVersion: rpcVersion, arguments: arguments)
}

/// Splits `message` into record-marking fragments of at most `fragmentBytes`.
func fragmented(_ message: ByteBuffer, fragmentBytes: Int) -> ByteBuffer {
    var message = message
    var out = ByteBuffer()
    repeat {
        let length = min(fragmentBytes, message.readableBytes)
        var fragment = message.readSlice(length: length) ?? ByteBuffer()
        let isLast = message.readableBytes == 0
        out.writeInteger((isLast ? 0x8000_0000 : 0) | UInt32(length), endianness: .big)
        out.writeBuffer(&fragment)
    } while message.readableBytes > 0
    return out
}

/// Runs `body` on a thread of its own (blocking socket work) and returns its result when done.
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}

final class SharedCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// Waits (bounded) until `value` stops changing for `quiet`, and returns it.
func settledValue(
    quiet: Duration = .milliseconds(300), within: Duration = .seconds(10), _ value: () -> Int
) async throws -> Int {
    let deadline = ContinuousClock.now + within
    var last = value()
    var since = ContinuousClock.now
    while ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
        let now = value()
        if now != last {
            last = now
            since = ContinuousClock.now
        } else if ContinuousClock.now - since >= quiet {
            return now
        }
    }
    return last
}
