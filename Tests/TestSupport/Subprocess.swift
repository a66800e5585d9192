import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with posix_spawn from the calling thread, in a process group of its
/// own, waited for with waitpid.
///
/// Not Foundation's Process: its termination notification can be lost when many children
/// start and end concurrently (seen here: a test hung on waitUntilExit with its child a
/// zombie), and its run-loop machinery misbehaves on a thread that entered a fresh network
/// namespace. posix_spawn from the calling thread makes the child inherit that thread's
/// namespaces; the process group lets a timeout kill grandchildren (an rpcbind a script
/// started) too. (swift-subprocess is async and spawns from its own threads, which loses both.)
public final class Subprocess: Sendable {
    /// Where a standard stream of the child goes.
    public enum Output: Sendable {
        case null
        /// Appended to this file (created if missing).
        case file(String)
        /// Duplicated from this descriptor of the parent (a pipe's write end).
        case descriptor(Int32)
    }

    public let pid: pid_t
    /// The file stdout goes to, if it goes to one.
    public let outputPath: String?
    private let exitStatus = Mutex<Int32?>(nil)

    /// Starts `arguments[0]` (looked up in PATH unless it holds a slash) with `arguments`;
    /// stdin is /dev/null; stderr goes where `error` says, or with stdout when it is nil.
    /// Signal mask and dispositions are reset: the test runner's threads may block or ignore
    /// signals, and a child that inherited that would not stop on SIGTERM.
    public init(
        _ arguments: [String],
        output: Output = .null,
        error: Output? = nil,
        environment: [String: String]? = nil
    ) throws {
        if case .file(let path) = output { self.outputPath = path } else { self.outputPath = nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        Self.redirect(&actions, 1, to: output)
        if let error {
            Self.redirect(&actions, 2, to: error)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Nothing but 0–2 reaches the child. Descriptors the test process holds without
        // close-on-exec (NIO's listening sockets among them) would otherwise live on in every
        // server a test starts: a test that closed its listener found it still LISTENing in
        // a strata process started meanwhile by another test, which then took its connections.
        Self.closeFrom3(&actions)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(
            &attributes,
            Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        )
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let environment = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var child: pid_t = 0
        let status = posix_spawnp(&child, arguments[0], &actions, &attributes, &cArguments, &cEnvironment)
        guard status == 0 else {
            throw TestSupportError("cannot start \(arguments[0]): \(String(cString: strerror(status)))")
        }
        self.pid = child
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later; not in Swift's Glibc
    /// module, hence by name).
    private static let addCloseFrom:
        (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, CInt) -> CInt)? = {
            guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else {
                return nil
            }
            return unsafeBitCast(
                symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, CInt) -> CInt).self)
        }()

    private static func closeFrom3(_ actions: inout posix_spawn_file_actions_t) {
        guard let addCloseFrom = Self.addCloseFrom, addCloseFrom(&actions, 3) == 0 else {
            preconditionFailure(
                "posix_spawn_file_actions_addclosefrom_np is missing: the tests need glibc 2.34 or later")
        }
    }

    private static func redirect(_ actions: inout posix_spawn_file_actions_t, _ descriptor: Int32, to output: Output) {
        switch output {
        case .null:
            posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", O_WRONLY, 0)
        case .file(let path):
            posix_spawn_file_actions_addopen(&actions, descriptor, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        case .descriptor(let source):
            posix_spawn_file_actions_adddup2(&actions, source, descriptor)
        }
    }

    /// True while the child has not exited (reaps it when it has).
    public var isRunning: Bool {
        self.exitStatus.withLock { exitStatus in
            if exitStatus != nil { return false }
            var status: Int32 = 0
            let result = waitpid(self.pid, &status, WNOHANG)
            if result == self.pid {
                exitStatus = Subprocess.decode(status)
                return false
            }
            if result < 0 && errno != EINTR {
                exitStatus = -1
                return false
            }
            return true
        }
    }

    /// The exit status (128 + signal for a killed child), once reaped.
    public var status: Int32? { self.exitStatus.withLock { $0 } }

    static func decode(_ status: Int32) -> Int32 {
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (the macros are not imported).
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Waits up to `timeout` seconds; returns the exit status, or nil if still running.
    public func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while self.isRunning {
            if Date() >= deadline { return nil }
            usleep(5_000)
        }
        return self.status
    }

    /// Sends `signal` to the child's whole process group.
    public func signalGroup(_ signal: Int32) {
        if self.status == nil { kill(-self.pid, signal) }
    }

    /// Sends `signal` to the child only.
    public func signal(_ signal: Int32) {
        if self.status == nil { kill(self.pid, signal) }
    }

    /// Waits up to `timeout` seconds for the exit status; then kills the whole group and fails, naming `command`
    /// and showing its output.
    func finish(within timeout: Double, _ command: @autoclosure () -> String) throws -> Int32 {
        if let status = self.wait(timeout: timeout) { return status }
        self.signalGroup(SIGKILL)
        _ = self.wait(timeout: 10)
        throw TestSupportError("\(command()) did not finish within \(timeout) s; output:\n\(self.output)")
    }

    /// SIGTERM, then SIGKILL to the group after `grace` seconds; always reaps.
    @discardableResult
    public func terminate(grace: Double = 10) -> Int32 {
        guard self.isRunning else { return self.status ?? -1 }
        self.signal(SIGTERM)
        if let status = self.wait(timeout: grace) { return status }
        self.signalGroup(SIGKILL)
        return self.wait(timeout: 10) ?? -1
    }

    /// What the child wrote to its output file so far ("" when it has none).
    public var output: String {
        guard let outputPath = self.outputPath else { return "" }
        return (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }

    deinit {
        if self.status == nil {
            self.signalGroup(SIGKILL)
            _ = self.wait(timeout: 5)
        }
    }
}

/// Output and status of a finished command.
public struct CommandResult: Sendable {
    public var status: Int32
    public var output: String
    public var succeeded: Bool { self.status == 0 }
}

/// Runs `executable` with `arguments`, bounded by `timeout` seconds (then its whole process
/// group is killed), and returns its combined output.
@discardableResult
public func run(
    _ executable: String,
    _ arguments: [String],
    environment: [String: String]? = nil,
    timeout: Double = 60
) throws -> CommandResult {
    let outputPath = "/tmp/strata-test-output-\(getpid())-\(UUID().uuidString)"
    defer { unlink(outputPath) }
    let child = try Subprocess([executable] + arguments, output: .file(outputPath), environment: environment)
    let status = try child.finish(within: timeout, "\(executable) \(arguments.joined(separator: " "))")
    return CommandResult(status: status, output: child.output)
}

/// Output of a finished command with stdout and stderr apart.
public struct SplitResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var succeeded: Bool { self.status == 0 }
}

/// As `run`, keeping stderr apart from stdout (messages meant for stderr must go there).
public func runSplit(
    _ executable: String,
    _ arguments: [String],
    environment: [String: String]? = nil,
    timeout: Double = 60
) throws -> SplitResult {
    let base = "/tmp/strata-test-output-\(getpid())-\(UUID().uuidString)"
    defer {
        unlink(base + ".out")
        unlink(base + ".err")
    }
    let child = try Subprocess(
        [executable] + arguments,
        output: .file(base + ".out"),
        error: .file(base + ".err"),
        environment: environment
    )
    let status = try child.finish(within: timeout, "\(executable) \(arguments.joined(separator: " "))")
    let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
    return SplitResult(status: status, stdout: read(base + ".out"), stderr: read(base + ".err"))
}
