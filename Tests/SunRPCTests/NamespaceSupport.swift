import Foundation
import Synchronization
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Runs test code inside fresh network and mount namespaces, so that it can own port 111 and a
/// private /run (rpcbind's socket) without touching the machine's.
///
/// Network and mount namespaces belong to a thread, not the process: a dedicated thread
/// unshares them, and sockets it creates and processes it spawns live there. The namespaces
/// vanish when the thread ends (after the closure has stopped what it started).
enum TestNamespace {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private typealias UnshareFunction = @convention(c) (Int32) -> Int32
    private typealias MountFunction =
        @convention(c) (
            UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UInt, UnsafeRawPointer?
        ) -> Int32

    private static let cloneNewNS: Int32 = 0x0002_0000
    private static let cloneNewNet: Int32 = 0x4000_0000
    private static let msRec: UInt = 16384
    private static let msPrivate: UInt = 1 << 18

    /// True when this process may create namespaces (root with CAP_SYS_ADMIN, `unshare` present).
    static var isAvailable: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")
    }

    /// Runs `body` on a new thread inside new namespaces. Fails after `timeout` (the thread is
    /// then abandoned: its body must bound its own waits).
    static func run<T: Sendable>(
        timeout: Duration = .seconds(60),
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let once = Once<T>()
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            once.set(continuation)
            let thread = Thread {
                once.finish(
                    Result {
                        try Self.enter(); return try body()
                    })
            }
            thread.stackSize = 8 << 20
            thread.start()
            Task {
                try? await Task.sleep(for: timeout)
                once.finish(.failure(Failure(description: "namespace test body did not finish within \(timeout)")))
            }
        }
    }

    /// Resumes a continuation once, whoever comes first.
    private final class Once<T: Sendable>: Sendable {
        private let continuation = Mutex<CheckedContinuation<T, any Error>?>(nil)

        func set(_ continuation: CheckedContinuation<T, any Error>) {
            self.continuation.withLock { $0 = continuation }
        }

        func finish(_ result: Result<T, any Error>) {
            let continuation = self.continuation.withLock { stored in
                defer { stored = nil }
                return stored
            }
            continuation?.resume(with: result)
        }
    }

    private static func enter() throws {
        guard let unshareSymbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "unshare"),
            let mountSymbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mount")
        else { throw Failure(description: "unshare/mount not found") }
        let unshareCall = unsafeBitCast(unshareSymbol, to: UnshareFunction.self)
        let mountCall = unsafeBitCast(mountSymbol, to: MountFunction.self)
        guard unshareCall(Self.cloneNewNet | Self.cloneNewNS) == 0 else {
            throw Failure(description: "unshare: \(String(cString: strerror(errno)))")
        }
        guard mountCall(nil, "/", nil, Self.msRec | Self.msPrivate, nil) == 0 else {
            throw Failure(description: "mount --make-rprivate /: \(String(cString: strerror(errno)))")
        }
        guard mountCall("tmpfs", "/run", "tmpfs", 0, "mode=755") == 0 else {
            throw Failure(description: "mount tmpfs /run: \(String(cString: strerror(errno)))")
        }
        let up = try TestSupport.run("/usr/sbin/ip", ["link", "set", "lo", "up"], timeout: 20)
        guard up.status == 0 else { throw Failure(description: "ip link set lo up: \(up.output)") }
    }
}

func debugLog(_ message: String) {
    if getenv("STRATA_TEST_DEBUG") != nil {
        let line = "[debug \(ContinuousClock.now)] \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
