import Foundation
import TestSupport
import Testing

/// The real `strata` binary driven by an independent NFS client: the libnfs tools
/// (nfs-ls, nfs-cp, nfs-cat from Debian's libnfs-utils), over a three-layer export.
@Suite(.serialized) struct LibNFSTests {
    @Test func listingMergesLayersAndHidesNothingTwice() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        defer { server.stop() }

        let root = try run("nfs-ls", [server.url("/union")])
        #expect(root.succeeded, "\(root.output)\n\(server.log)")
        for name in ["etc", "usr", "shared", "opt"] {
            #expect(
                root.output.contains(" \(name)\n") || root.output.hasSuffix(" \(name)"),
                "missing \(name) in:\n\(root.output)")
        }
        let shared = try run("nfs-ls", [server.url("/union", path: "/shared")])
        #expect(shared.succeeded)
        let names = shared.output.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
        #expect(names.filter { $0 == "in-both" }.count == 1, "\(shared.output)")
        #expect(Set(names).isSuperset(of: ["only-in-lower1", "only-in-lower2", "in-both"]))
    }

    @Test func recursiveListingReturnsEveryFileOnce() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        for index in 0..<300 {
            try directory.write("lower\(index % 2 + 1)/many/file-\(index)", "\(index)\n")
        }
        let server = try ServerProcess(config: threeLayerConfig(), directory: directory)
        defer { server.stop() }
        let listing = try run("nfs-ls", ["-R", server.url("/union")], timeout: 120)
        #expect(listing.succeeded, "\(listing.output)")
        let lines = listing.output.split(separator: "\n").map(String.init)
        var seen: [String: Int] = [:]
        for line in lines {
            if let name = line.split(separator: " ").last, let range = name.range(of: "file-") {
                seen[String(name[range.lowerBound...]), default: 0] += 1
            }
        }
        #expect(seen.count == 300, "expected 300 distinct files, saw \(seen.count) in:\n\(listing.output.prefix(2000))")
        #expect(seen.values.allSatisfy { $0 == 1 }, "some names listed more than once")
    }

    @Test func readsTheTopMostCopy() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        defer { server.stop() }
        let hostname = try run("nfs-cat", [server.url("/union", path: "/etc/hostname")])
        #expect(hostname.succeeded, "\(hostname.output)")
        #expect(hostname.output == "site\n")
        let inBoth = try run("nfs-cat", [server.url("/union", path: "/shared/in-both")])
        #expect(inBoth.output == "lower1 version\n")
        let passwd = try run("nfs-cat", [server.url("/union", path: "/etc/passwd")])
        #expect(passwd.output.hasPrefix("root:x:0:0"))
    }

    @Test(arguments: [0, 1, 4095, 65536, 1 << 20, 9 << 20 | 12345])
    func copiesFilesInAndOutIntact(size: Int) throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        let directory = server.directory
        defer { server.stop() }

        var generator = SplitMix64(seed: UInt64(size) &+ 17)
        let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let source = directory.file("source.bin")
        try Data(bytes).write(to: URL(fileURLWithPath: source))
        let name = "/copied-\(size).bin"
        let copyIn = try run("nfs-cp", [source, server.url("/union", path: name)], timeout: 120)
        #expect(copyIn.succeeded, "\(copyIn.output)\n\(server.log)")
        // It landed in the upper layer's tree, byte for byte.
        let landed = FileManager.default.contents(atPath: directory.file("upper/tree\(name)"))
        #expect(landed == Data(bytes), "upper/tree\(name) differs")

        let back = directory.file("back.bin")
        let copyOut = try run("nfs-cp", [server.url("/union", path: name), back], timeout: 120)
        #expect(copyOut.succeeded, "\(copyOut.output)")
        #expect(FileManager.default.contents(atPath: back) == Data(bytes))
    }

    @Test func copyingIntoALowerDirectoryCopiesUpItsParentsWithTheirMetadata() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        chmod(directory.file("lower2/usr/share/doc"), 0o750)
        let server = try ServerProcess(config: threeLayerConfig(), directory: directory)
        defer { server.stop() }
        try directory.write("note", "written through libnfs\n")
        // nfs-cp creates its destination with GUARDED, so it writes a new name (libnfs refuses
        // to overwrite; the overwrite path is covered by NFSProtocolTests).
        let copy = try run("nfs-cp", [directory.file("note"), server.url("/union", path: "/usr/share/doc/note")])
        #expect(copy.succeeded, "\(copy.output)\n\(server.log)")
        #expect(directory.read("upper/tree/usr/share/doc/note") == "written through libnfs\n")
        var info = stat()
        stat(directory.file("upper/tree/usr/share/doc"), &info)
        #expect(info.st_mode & 0o7777 == 0o750, "the copied-up parent keeps its lower mode")
        #expect(!directory.exists("lower2/usr/share/doc/note"))
        let readBack = try run("nfs-cat", [server.url("/union", path: "/usr/share/doc/note")])
        #expect(readBack.output == "written through libnfs\n")
        let lowerFile = try run("nfs-cat", [server.url("/union", path: "/usr/share/doc/readme")])
        #expect(lowerFile.output == "from lower2\n")
    }

    @Test func readOnlyClientCannotWrite() throws {
        let server = try ServerProcess(
            threeLayers: threeLayerConfig(clients: "\"127.0.0.0/8(ro,insecure)\""))
        let directory = server.directory
        defer { server.stop() }
        try directory.write("f", "x\n")
        let copy = try run("nfs-cp", [directory.file("f"), server.url("/union", path: "/f")])
        #expect(!copy.succeeded, "a read-only client wrote: \(copy.output)")
        #expect(!directory.exists("upper/tree/f"))
        let read = try run("nfs-cat", [server.url("/union", path: "/etc/hostname")])
        #expect(read.output == "site\n")
    }
}
