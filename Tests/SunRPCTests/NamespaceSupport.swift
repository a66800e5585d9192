import Foundation
import Synchronization

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
                once.finish(Result { try Self.enter(); return try body() })
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
        let up = try runProcess("/usr/sbin/ip", ["link", "set", "lo", "up"])
        guard up.status == 0 else { throw Failure(description: "ip link set lo up: \(up.output)") }
    }
}

/// Spawns `path` with `arguments`, its stdout and stderr going to `outputFD` (or /dev/null).
///
/// posix_spawn from the calling thread, so the child inherits that thread's namespaces.
/// (Foundation's Process is not used: its run-loop machinery misbehaves in a fresh namespace.)
func spawnProcess(_ path: String, _ arguments: [String], outputFD: Int32? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let outputFD {
        posix_spawn_file_actions_adddup2(&actions, outputFD, 1)
        posix_spawn_file_actions_adddup2(&actions, outputFD, 2)
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    }
    // The test runner's threads may block or ignore signals; a child must not inherit that, or
    // SIGTERM would not stop it.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    posix_spawnattr_setsigmask(&attributes, &emptyMask)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
    guard rc == 0 else {
        throw TestNamespace.Failure(description: "posix_spawn \(path): \(String(cString: strerror(rc)))")
    }
    return pid
}

/// Waits for `pid` until `deadline`; returns its exit status, or nil if it is still running.
func waitForExit(_ pid: pid_t, until deadline: ContinuousClock.Instant) -> Int32? {
    while true {
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid {
            // WIFEXITED / WEXITSTATUS, spelled out (macros are not imported).
            return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        }
        if rc < 0 && errno != EINTR { return -1 }
        if ContinuousClock.now >= deadline { return nil }
        usleep(10_000)
    }
}

/// Runs a program to completion (bounded by `timeout`, then killed) and returns its exit status
/// and combined output.
func runProcess(_ path: String, _ arguments: [String], timeout: Duration = .seconds(20)) throws -> (status: Int32, output: String) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw TestNamespace.Failure(description: "pipe failed") }
    let pid: pid_t
    do {
        pid = try spawnProcess(path, arguments, outputFD: fds[1])
    } catch {
        close(fds[0])
        close(fds[1])
        throw error
    }
    close(fds[1])
    defer { close(fds[0]) }
    let deadline = ContinuousClock.now + timeout
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while ContinuousClock.now < deadline {
        var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, 200) <= 0 { continue }
        let n = read(fds[0], &buffer, buffer.count)
        if n <= 0 { break }
        output.append(contentsOf: buffer[0..<n])
    }
    var status = waitForExit(pid, until: deadline)
    if status == nil {
        kill(pid, SIGKILL)
        status = waitForExit(pid, until: .now + .seconds(5))
    }
    return (status ?? -1, String(decoding: output, as: UTF8.self))
}

/// A daemon started by a test, stopped by PID.
final class TestDaemon: Sendable {
    let pid: pid_t

    init(_ path: String, _ arguments: [String]) throws {
        self.pid = try spawnProcess(path, arguments)
    }

    func stop() {
        kill(self.pid, SIGTERM)
        if waitForExit(self.pid, until: .now + .seconds(5)) == nil {
            kill(self.pid, SIGKILL)
            _ = waitForExit(self.pid, until: .now + .seconds(5))
        }
    }
}

func debugLog(_ message: String) {
    if getenv("STRATA_TEST_DEBUG") != nil {
        let line = "[debug \(ContinuousClock.now)] \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
