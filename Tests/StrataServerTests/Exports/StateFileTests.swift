import Foundation
import TestSupport
import Testing

@testable import StrataServer

/// The small state files: written whole, replaced in one rename, no temporary left behind, and a
/// failure that names the path instead of being swallowed.
@Suite struct StateFileTests {
    @Test func writesCreatesTheDirectoryAndReplacesWhole() throws {
        let root = try makeTemporaryDirectory("strata-statefile")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/state/rmtab"
        try StateFile.write("a long first version\n", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "a long first version\n")
        try StateFile.write("short\n", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "short\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/state") == ["rmtab"])
        var st = stat()
        #expect(stat(root + "/state", &st) == 0 && st.st_mode & 0o777 == 0o700)
    }

    @Test func aFailureNamesThePath() throws {
        let root = try makeTemporaryDirectory("strata-statefile")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "not a directory".write(toFile: root + "/file", atomically: false, encoding: .utf8)
        #expect {
            try StateFile.write("x\n", to: root + "/file/rmtab")
        } throws: { error in
            "\(error)".contains(root + "/file")
        }
    }

    @Test func theMountTableRoundTripsThroughIt() throws {
        let root = try makeTemporaryDirectory("strata-statefile")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let mounts = [MountRecord(host: "10.0.0.7", directory: "/diskless root", clientKey: "10.0.0.7")]
        try ExportRegistry.saveMountTable(mounts, stateDirectory: root)
        #expect(ExportRegistry.loadMountTable(stateDirectory: root) == mounts)
        try ExportRegistry.saveGenerations(["b": 2, "a": 1], stateDirectory: root)
        #expect(ExportRegistry.loadGenerations(stateDirectory: root) == ["a": 1, "b": 2])
    }
}
