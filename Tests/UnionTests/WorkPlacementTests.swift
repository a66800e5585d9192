import Foundation
import Glibc
import Testing

@testable import Union

/// work/ is marked as a top directory (`chattr +T`, `Sys.markTopDirectory`) where the file system keeps the flag, so
/// the directories MKDIR builds there and renames into place are spread over ext4's block groups instead of all landing
/// next to work/ (where, after removes, every new inode scanned the recently freed ones).
@Suite struct WorkPlacementTests {
    /// The flags of `path` (FS_IOC_GETFLAGS), nil where the file system keeps none.
    static func flags(_ path: String) -> Int32? {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var flags: Int32 = 0
        return ioctl(fd, Sys.FS_IOC_GETFLAGS, &flags) == 0 ? flags : nil
    }

    /// On ext4 (/tmp here) work/ gets the flag; on tmpfs (/dev/shm) marking fails and changes nothing else.
    @Test(arguments: ["/tmp", "/dev/shm"])
    func workIsATopDirectoryWhereTheFileSystemKeepsTheFlag(in parent: String) throws {
        let f = Fixture(in: parent)
        let scratch = f.base + "/scratch"
        f.mkdir(scratch)
        // tmpfs keeps some flags (FS_IOC_GETFLAGS works) but refuses this one.
        let keepsFlags = Sys.markTopDirectory(try Files.openDirectoryAbsolute(scratch))
        #expect(keepsFlags == (((Self.flags(scratch) ?? 0) & Sys.FS_TOPDIR_FL) != 0))
        let u = try f.open()
        defer { u.close() }
        if keepsFlags {
            let flags = try #require(Self.flags(f.upper + "/work"))
            #expect(flags & Sys.FS_TOPDIR_FL != 0, "\(parent): work/ flags \(String(flags, radix: 16))")
            // Directories made through the union are not top directories themselves.
            _ = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root)
            #expect((Self.flags(f.upper + "/tree/d") ?? 0) & Sys.FS_TOPDIR_FL == 0)
        } else {
            let work = try Files.openDirectoryAbsolute(f.upper + "/work")
            #expect(!Sys.markTopDirectory(work), "\(parent): no flags, yet marked")
        }
        // Either way the namespace works as before.
        _ = try u.mkdir(in: u.rootHandle, b("e"), attributes: .init(), as: root)
        _ = try u.create(in: try u.h("e"), b("f"), mode: .guarded, attributes: .init(), as: root)
        #expect(try u.names("e") == ["f"])
    }
}
