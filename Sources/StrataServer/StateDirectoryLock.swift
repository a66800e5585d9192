import Foundation

/// Makes a state directory one server's: `<state_dir>/server.lock`, locked with flock(2) for
/// the life of the process and holding its pid. Two servers on one state directory would
/// overwrite each other's mount table and reset generations and open each upper twice; the
/// second one refuses to start instead, naming the first. The kernel drops the lock when the
/// process ends, however it ends, so a crash never leaves the directory locked.
public final class StateDirectoryLock: Sendable {
    let descriptor: Int32
    public let path: String

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    public static func lockPath(stateDirectory: String) -> String { "\(stateDirectory)/server.lock" }

    /// Takes the lock of `stateDirectory` (created if missing) or throws naming the server
    /// that holds it.
    public static func acquire(stateDirectory: String) throws -> StateDirectoryLock {
        let path = lockPath(stateDirectory: stateDirectory)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw StartupError(
                message:
                    "cannot open \(path): \(String(cString: strerror(errno))); fix server.state_dir or its permissions")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = readPID(descriptor)
            close(descriptor)
            let who = holder.map { "another strata server (pid \($0))" } ?? "another strata server"
            throw StartupError(
                message:
                    "\(who) is serving state directory \(stateDirectory) (it holds \(path)); stop it first, or give this server its own server.state_dir (--state-dir)"
            )
        }
        let line = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = line.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        return StateDirectoryLock(descriptor: descriptor, path: path)
    }

    /// The pid of the server holding the lock of `stateDirectory`, or nil if no server runs
    /// there (the lock is free or was never taken).
    public static func holder(stateDirectory: String) -> pid_t? {
        let descriptor = open(lockPath(stateDirectory: stateDirectory), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        if flock(descriptor, LOCK_SH | LOCK_NB) == 0 {
            flock(descriptor, LOCK_UN)
            return nil
        }
        return readPID(descriptor) ?? -1
    }

    private static func readPID(_ descriptor: Int32) -> pid_t? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return pid_t(String(decoding: buffer[0..<count], as: UTF8.self).strippingCharacters(" \n"))
    }

    /// Lets the lock go (server shutdown). The file stays: removing it would let a third
    /// server lock a new file while a second still waits on the old one.
    public func release() {
        flock(self.descriptor, LOCK_UN)
        close(self.descriptor)
    }
}
