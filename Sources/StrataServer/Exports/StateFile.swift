import Foundation
import Glibc
import Logging

/// Writes the small state files in `state_dir` (mount table, reset generations, export ids) so
/// that a crash at any instant leaves the old or the new content, never a torn or empty file:
/// the text goes to a temporary file beside it, is flushed, renamed over the old one, and the
/// directory is flushed so the rename itself survives. (Foundation's `atomically:` write renames
/// but does not flush, so after a power loss the new name can point at an empty file.)
enum StateFile {
    struct WriteError: Error, CustomStringConvertible {
        let call: String
        let path: String
        let errno: Int32
        var description: String { "\(self.call) \(self.path): \(String(cString: strerror(self.errno)))" }
    }

    /// The text of the state file `path`, nil if there is none yet. A file that exists but
    /// cannot be read is logged (the server then starts as without it) rather than ignored.
    static func read(_ path: String, logger: Logger?) -> String? {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            if access(path, F_OK) == 0 || errno != ENOENT {
                logger?.error(
                    "cannot read a state file; going on without it", metadata: ["file": "\(path)", "error": "\(error)"])
            }
            return nil
        }
    }

    static func write(_ text: String, to path: String) throws(WriteError) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        try self.makeDirectories(directory.isEmpty ? "/" : directory)
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw WriteError(call: "open", path: temporary, errno: errno) }
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                let saved = errno
                close(fd)
                unlink(temporary)
                throw WriteError(call: "write", path: temporary, errno: saved)
            }
            offset += written
        }
        bytes.removeAll()
        if fsync(fd) != 0 {
            let saved = errno
            close(fd)
            unlink(temporary)
            throw WriteError(call: "fsync", path: temporary, errno: saved)
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let saved = errno
            unlink(temporary)
            throw WriteError(call: "rename", path: path, errno: saved)
        }
        let dirFD = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirFD >= 0 else { throw WriteError(call: "open", path: directory, errno: errno) }
        defer { close(dirFD) }
        guard fsync(dirFD) == 0 else { throw WriteError(call: "fsync", path: directory, errno: errno) }
    }

    /// `mkdir -p` with mode 0700 for what it creates (the state directory holds the control socket).
    private static func makeDirectories(_ directory: String) throws(WriteError) {
        var path = ""
        for component in directory.split(separator: "/", omittingEmptySubsequences: true) {
            path += "/" + component
            if mkdir(path, 0o700) != 0, errno != EEXIST {
                throw WriteError(call: "mkdir", path: path, errno: errno)
            }
        }
    }
}
