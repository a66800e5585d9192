import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why a test-support helper could not set up what a test needs; the message names it.
public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Makes a fresh directory `parent/label-XXXXXX` (mkdtemp) and returns its path.
///
/// `parent`: where it is made (a tmpfs such as /dev/shm for tests that need no disk).
public func makeTemporaryDirectory(_ label: String, in parent: String = "/tmp") throws -> String {
    var template = Array("\(parent)/\(label)-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
        throw TestSupportError("mkdtemp failed for \(parent)/\(label)-XXXXXX: errno \(errno)")
    }
    return String(cString: made)
}

/// A scratch directory removed (with everything in it) when the value is released.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(_ label: String = "strata-test", in parent: String = "/tmp") throws {
        self.path = try makeTemporaryDirectory(label, in: parent)
    }

    /// The path of `relative` inside this directory.
    public func file(_ relative: String) -> String { "\(self.path)/\(relative)" }

    /// Writes `contents` at `relative`, creating parent directories.
    public func write(_ relative: String, _ contents: String, mode: Int = 0o644) throws {
        let full = self.file(relative)
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        try contents.write(toFile: full, atomically: false, encoding: .utf8)
        guard chmod(full, mode_t(mode)) == 0 else {
            throw TestSupportError("chmod \(full): errno \(errno)")
        }
    }

    public func mkdir(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: self.file(relative), withIntermediateDirectories: true)
    }

    public func read(_ relative: String) -> String? {
        try? String(contentsOfFile: self.file(relative), encoding: .utf8)
    }

    public func exists(_ relative: String) -> Bool {
        var info = stat()
        return lstat(self.file(relative), &info) == 0
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}
