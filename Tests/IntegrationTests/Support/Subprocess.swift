import Foundation

/// A child process started with posix_spawn in a process group of its own, its output going to
/// a file, waited for with waitpid. The tests do not use Foundation's Process: its termination
/// notification can be lost when many children start and end concurrently (seen here: a test
/// hung on waitUntilExit with its child a zombie), and a group lets a timeout kill grandchildren
/// (an rpcbind a script started) too.
final class Subprocess {
    let pid: pid_t
    let outputPath: String
    private(set) var exitStatus: Int32?

    /// Starts `arguments[0]` (looked up in PATH) with `arguments`; stdout and stderr append to
    /// `outputPath`; stdin is /dev/null.
    /// `errorPath`, if given, takes stderr apart from stdout.
    init(_ arguments: [String], outputPath: String, errorPath: String? = nil, environment: [String: String]? = nil) throws {
        self.outputPath = outputPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let errorPath {
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var child: pid_t = 0
        let status = posix_spawnp(&child, arguments[0], &actions, &attributes, &cArguments, &cEnvironment)
        guard status == 0 else {
            throw HarnessError("cannot start \(arguments[0]): \(String(cString: strerror(status)))")
        }
        self.pid = child
    }

    /// True while the child has not exited (reaps it when it has).
    var isRunning: Bool {
        if self.exitStatus != nil { return false }
        var status: Int32 = 0
        let result = waitpid(self.pid, &status, WNOHANG)
        if result == self.pid {
            self.exitStatus = Subprocess.decode(status)
            return false
        }
        return result == 0
    }

    static func decode(_ status: Int32) -> Int32 {
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (the macros are not imported).
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Waits up to `timeout` seconds; returns the exit status, or nil if still running.
    func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while self.isRunning {
            if Date() >= deadline { return nil }
            usleep(5_000)
        }
        return self.exitStatus
    }

    /// Sends `signal` to the child's whole process group.
    func signalGroup(_ signal: Int32) {
        if self.exitStatus == nil { kill(-self.pid, signal) }
    }

    /// Sends `signal` to the child only.
    func signal(_ signal: Int32) {
        if self.exitStatus == nil { kill(self.pid, signal) }
    }

    /// SIGTERM, then SIGKILL to the group after `grace` seconds; always reaps.
    @discardableResult
    func terminate(grace: Double = 10) -> Int32 {
        guard self.isRunning else { return self.exitStatus ?? -1 }
        self.signal(SIGTERM)
        if let status = self.wait(timeout: grace) { return status }
        self.signalGroup(SIGKILL)
        return self.wait(timeout: 10) ?? -1
    }

    var output: String {
        (try? String(contentsOfFile: self.outputPath, encoding: .utf8)) ?? ""
    }

    deinit {
        if self.exitStatus == nil {
            self.signalGroup(SIGKILL)
            _ = self.wait(timeout: 5)
        }
    }
}
