import Foundation
import GRDB
import Glibc
import Testing

@testable import Union

/// A new sidecar is made under a temporary name and renamed into place whole.
@Suite struct SidecarCreationTests {
    @Test func aNewSidecarIsCompleteAndLeavesNoTemporaryFiles() throws {
        let f = Fixture()
        let upper = f.base + "/upper"
        let u = try UnionNamespace(upper: upper, lowers: [], logger: .init(label: "t"))
        _ = try u.mkdir(in: u.rootHandle, Array("d".utf8), attributes: .init(), as: root)
        u.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: upper)
        #expect(!names.contains { $0.hasPrefix("layer.db.new") }, "\(names)")
        // Every migration was applied (a Strata layer's format row is the last one).
        #expect(try LayerFormat.isStrataLayer(upper))
        let reopened = try UnionNamespace(upper: upper, lowers: [], logger: .init(label: "t"))
        defer { reopened.close() }
        #expect(try reopened.lookup(reopened.rootHandle, Array("d".utf8), as: root).1.type == .directory)
    }

    /// A crash during a creation leaves only `layer.db.new` (and its WAL): the next open removes it and makes the
    /// sidecar afresh; the leftover is never taken for the sidecar.
    @Test func theLeftoverOfAnInterruptedCreationIsRemoved() throws {
        let f = Fixture()
        let upper = f.base + "/upper"
        try FileManager.default.createDirectory(atPath: upper, withIntermediateDirectories: true)
        for name in ["layer.db.new", "layer.db.new-wal", "layer.db.new-shm"] {
            #expect(FileManager.default.createFile(atPath: upper + "/" + name, contents: Data("torn".utf8)))
        }
        let u = try UnionNamespace(upper: upper, lowers: [], logger: .init(label: "t"))
        _ = try u.mkdir(in: u.rootHandle, Array("d".utf8), attributes: .init(), as: root)
        u.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: upper)
        #expect(!names.contains { $0.hasPrefix("layer.db.new") }, "\(names)")
        #expect(try LayerFormat.isStrataLayer(upper))
    }
}
