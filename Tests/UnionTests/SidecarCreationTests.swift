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

/// Extended attributes at copy-up: copied, overlayfs' markers left out, and a failure to store one is an error
/// (only a destination refusing an attribute, EPERM/ENOTSUP, is skipped).
@Suite struct CopyXattrTests {
    @Test func attributesAreCopiedAndOverlayMarkersLeftOut() throws {
        let f = Fixture()
        f.file(f.base + "/source", "data")
        f.file(f.base + "/destination", "")
        f.setXattr(f.base + "/source", "user.kept", "yes")
        f.setXattr(f.base + "/source", "user.overlay.origin", "x")
        let from = FD(open(f.base + "/source", O_RDONLY | O_CLOEXEC))
        let to = FD(open(f.base + "/destination", O_RDWR | O_CLOEXEC))
        try FileCopy.copyXattrs(from: from, to: to)
        #expect(f.getXattr(f.base + "/destination", "user.kept") == "yes")
        #expect(f.getXattr(f.base + "/destination", "user.overlay.origin") == nil)
    }

    @Test func aDestinationThatCannotStoreThemFailsTheCopy() throws {
        let f = Fixture()
        f.file(f.base + "/source", "data")
        f.setXattr(f.base + "/source", "user.kept", "yes")
        let from = FD(open(f.base + "/source", O_RDONLY | O_CLOEXEC))
        let closed = FD(-1)  // EBADF: an error other than a refusal, which the old copy ignored
        #expect(throws: UnionError.self) { try FileCopy.copyXattrs(from: from, to: closed) }
    }
}
