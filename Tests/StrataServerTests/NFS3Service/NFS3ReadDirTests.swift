import Foundation
import NFS3
import NIOCore
import TestSupport
import Testing
import Union
import XDR

@testable import StrataServer

/// READDIR and READDIRPLUS: cookies, resumption, exact size limits.
@Suite struct NFS3ReadDirTests {
    static let names = (0..<60).map { String(format: "file-%03d", $0) }

    static func harness() throws -> NFS3Harness {
        var files: [String: String] = [:]
        for name in Self.names where name.hasSuffix("0") == false { files[name] = "x" }
        let harness = try NFS3Harness(lowerFiles: files)
        // Some names only in the upper layer, so the listing is merged.
        for name in Self.names where name.hasSuffix("0") {
            guard case .ok = try harness.createFile(name) else {
                throw NFS3Harness.HarnessError.unexpected("create \(name)")
            }
        }
        return harness
    }

    /// Reads the whole directory with READDIR of `count` bytes per call, checking every reply's
    /// size; returns the names in order.
    static func readAll(_ harness: NFS3Harness, dir: FileHandle3, count: UInt32) throws -> [String] {
        var names: [String] = []
        var cookie: UInt64 = 0
        var verifier = CookieVerifier3.zero
        for _ in 0..<10_000 {
            let args = ReadDir3Args(dir: dir, cookie: cookie, cookieverf: verifier, count: count)
            #expect(harness.replyBytes(.readdir, args) <= Int(count))
            let result = try harness.call(.readdir, args, as: ReadDir3Res.self)
            let page = try #require(result.success, "READDIR count \(count) cookie \(cookie) answered \(result.status)")
            names += page.entries.map { String(decoding: $0.name, as: UTF8.self) }
            if page.eof { return names }
            let last = try #require(page.entries.last, "a page without eof must have entries")
            cookie = last.cookie
            verifier = page.cookieverf
        }
        Issue.record("READDIR did not finish")
        return names
    }

    @Test(arguments: [UInt32(4096), 1024, 300, 200, 128, 100])
    func readdirListsEveryNameOnceAtAnyCount(count: UInt32) throws {
        let harness = try Self.harness()
        let names = try Self.readAll(harness, dir: harness.root(), count: count)
        #expect(names.prefix(2) == [".", ".."])
        #expect(names.count == Self.names.count + 2)
        #expect(Set(names.dropFirst(2)) == Set(Self.names))
    }

    @Test func readdirCountTooSmallForAnyEntryIsToosmall() throws {
        let harness = try Self.harness()
        // Status 4, no dir attributes 4, verifier 8, one "." entry 28, end of list 4, eof 4: 52 bytes.
        for count in UInt32(0)..<52 {
            let result = try harness.readdir(count: count)
            #expect(result.status == .toosmall, "count \(count)")
        }
        let smallest = try harness.readdir(count: 52)
        let page = try #require(smallest.success, "count 52 answered \(smallest.status)")
        #expect(page.entries.map(\.name) == [[0x2E]])
        #expect(page.dirAttributes.attributes == nil)
        #expect(!page.eof)
    }

    @Test func readdirCookiesOfDotEntriesAreOneAndTwoAndOthersAbove() throws {
        let harness = try Self.harness()
        let page = try #require(
            try harness.readdir(count: 65536).success)
        #expect(page.entries[0].cookie == 1)
        #expect(page.entries[1].cookie == 2)
        #expect(page.entries.dropFirst(2).allSatisfy { $0.cookie > 2 })
        #expect(Set(page.entries.map(\.cookie)).count == page.entries.count)
        let root = try harness.attributes(harness.root())
        #expect(page.entries[0].fileid == root.fileid)
        // The verifier is the union's: zero, since every cookie stays valid.
        #expect(page.cookieverf == .zero)
    }

    @Test func readdirResumesFromSavedCookieAfterChanges() throws {
        let harness = try Self.harness()
        let first = try #require(
            try harness.readdir(count: 600).success)
        #expect(!first.eof)
        let seen = Set(first.entries.map { String(decoding: $0.name, as: UTF8.self) })
        let saved = try #require(first.entries.last).cookie
        // Another client changes the directory: removes a name not yet seen, adds new ones.
        let unseen = try #require(Self.names.first { !seen.contains($0) })
        #expect(
            try harness.call(
                .remove, Remove3Args(object: DirOpArgs3(dir: harness.root(), name: Array(unseen.utf8))),
                as: Remove3Res.self
            ).status == .ok)
        for name in ["late-1", "late-2"] { _ = try harness.createFile(name) }
        // A stale, non-zero cookie verifier is not refused either.
        var names: [String] = []
        var cookie = saved
        while true {
            let result = try harness.call(
                .readdir,
                ReadDir3Args(dir: harness.root(), cookie: cookie, cookieverf: Verifier3(rawValue: 77), count: 600),
                as: ReadDir3Res.self)
            let page = try #require(result.success, "resumed readdir answered \(result.status)")
            names += page.entries.map { String(decoding: $0.name, as: UTF8.self) }
            if page.eof { break }
            cookie = try #require(page.entries.last).cookie
        }
        #expect(seen.isDisjoint(with: names), "names returned twice")
        #expect(!names.contains(unseen))
        let unchanged = Set(Self.names).subtracting(seen).subtracting([unseen])
        #expect(unchanged.isSubset(of: Set(names)), "unchanged names lost")
        #expect(Set(names).count == names.count)
    }

    @Test func readdirOfAFileIsNotdir() throws {
        let harness = try Self.harness()
        let file = try harness.handle("file-001")
        let result = try harness.readdir(file, count: 4096)
        #expect(result.status == .notdir)
    }

    @Test func readdirOfEmptyDirectoryAfterDotDotIsEOF() throws {
        let harness = try NFS3Harness()
        let result = try harness.readdir(cookie: 2, count: 4096)
        let page = try #require(result.success, "readdir answered \(result.status)")
        #expect(page.entries.isEmpty)
        #expect(page.eof)
    }

    // MARK: READDIRPLUS

    static func readAllPlus(
        _ harness: NFS3Harness, dir: FileHandle3, dircount: UInt32, maxcount: UInt32
    ) throws -> [EntryPlus3] {
        var entries: [EntryPlus3] = []
        var cookie: UInt64 = 0
        for _ in 0..<10_000 {
            let args = ReadDirPlus3Args(
                dir: dir, cookie: cookie, cookieverf: .zero, dircount: dircount, maxcount: maxcount)
            #expect(harness.replyBytes(.readdirplus, args) <= Int(maxcount))
            let result = try harness.call(.readdirplus, args, as: ReadDirPlus3Res.self)
            let page = try #require(result.success, "READDIRPLUS \(dircount)/\(maxcount) answered \(result.status)")
            let directoryBytes = page.entries.dropFirst().reduce(0) {
                $0 + EntryPlus3.directoryInfoSize(nameLength: $1.name.count)
            }
            if page.entries.count > 1 {
                let firstBytes = EntryPlus3.directoryInfoSize(nameLength: page.entries[0].name.count)
                #expect(firstBytes + directoryBytes <= Int(dircount))
            }
            entries += page.entries
            if page.eof { return entries }
            cookie = try #require(page.entries.last).cookie
        }
        Issue.record("READDIRPLUS did not finish")
        return entries
    }

    @Test(arguments: [(UInt32(8192), UInt32(32768)), (512, 4096), (100, 400), (0, 300), (4096, 250)])
    func readdirplusListsEveryNameWithHandles(dircount: UInt32, maxcount: UInt32) throws {
        let harness = try Self.harness()
        let entries = try Self.readAllPlus(harness, dir: harness.root(), dircount: dircount, maxcount: maxcount)
        let names = entries.map { String(decoding: $0.name, as: UTF8.self) }
        #expect(names.prefix(2) == [".", ".."])
        #expect(Set(names.dropFirst(2)) == Set(Self.names))
        #expect(names.count == Self.names.count + 2)
        for entry in entries where maxcount >= 4096 {
            #expect(entry.nameHandle.handle != nil, "\(entry.name) has no handle")
            #expect(entry.nameAttributes.attributes?.fileid == entry.fileid)
        }
        // The handles are the ones LOOKUP gives.
        if let sample = entries.first(where: { $0.name == Array("file-007".utf8) }),
            let handle = sample.nameHandle.handle
        {
            #expect(handle == (try harness.handle("file-007")))
        }
    }

    @Test func readdirplusMaxcountTooSmallIsToosmall() throws {
        let harness = try Self.harness()
        for maxcount in UInt32(0)..<64 {
            let args = ReadDirPlus3Args(
                dir: harness.root(), cookie: 0, cookieverf: .zero, dircount: 1000, maxcount: maxcount)
            let result = try harness.call(.readdirplus, args, as: ReadDirPlus3Res.self)
            // 4 status + 4 no dir attributes + 8 verifier + 8 end/eof + bare "." (28 + 8) = 60.
            if maxcount < 60 {
                #expect(result.status == .toosmall, "maxcount \(maxcount)")
            } else {
                #expect(result.status == .ok, "maxcount \(maxcount)")
                #expect(harness.replyBytes(.readdirplus, args) <= Int(maxcount))
            }
        }
    }

    /// The READDIRPLUS reply encoder writes what the RFC types' encoders write, byte for byte:
    /// entries with and without attributes and handle, a bare first entry, names of every length
    /// modulo 4, extreme attribute values, with and without directory attributes.
    @Test func readdirplusEncoderMatchesTheTypesEncoding() throws {
        func handle(_ fileid: UInt64) throws -> ObjectHandle {
            var bytes: [UInt8] = [0x53, 2, 0, 0]
            for v in [fileid, fileid &* 0x9e37_79b9_7f4a_7c15] {
                bytes += (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) }
            }
            return try #require(ObjectHandle(bytes: bytes))
        }
        func attributes(_ fileid: UInt64, _ type: FileType) -> Attributes {
            Attributes(
                type: type, mode: 0o7777, nlink: .max, uid: 1000, gid: .max, size: .max, usedBytes: 1 << 40,
                rdev: DeviceNumber(major: 8, minor: .max), fsid: 0xdead_beef_0000_0001, fileid: fileid,
                atime: Timespec(seconds: -1, nanoseconds: 999_999_999),
                mtime: Timespec(seconds: 1 << 40, nanoseconds: 1_500_000_000),
                ctime: Timespec(seconds: 1_700_000_000, nanoseconds: 1))
        }
        var entries: [DirectoryListingEntry] = []
        for (i, type) in [FileType.regular, .directory, .symlink, .characterDevice, .fifo, .socket, .blockDevice]
            .enumerated()
        {
            let fileid = UInt64(100 + i)
            entries.append(
                DirectoryListingEntry(
                    kind: .member, name: Array(String(repeating: "n", count: i + 1).utf8), fileid: fileid,
                    cookie: UInt64.max - UInt64(i),
                    object: i == 4 ? nil : FoundObject(handle: try handle(fileid), attributes: attributes(fileid, type))
                ))
        }
        let encoder = ReadDirPlusEncoder(exportID: 0xab_cdef, clientTag: 0x1234_5678)
        for withDirAttributes in [true, false] {
            for firstWhole in [true, false] {
                for eof in [true, false] {
                    let dirAttributes = attributes(1, .directory)
                    let expected = ReadDirPlus3Res.ok(
                        ReadDirPlus3ResOK(
                            dirAttributes: withDirAttributes ? PostOpAttr(FileAttributes3(dirAttributes)) : .absent,
                            cookieverf: CookieVerifier3(rawValue: 0x0102_0304_0506_0708),
                            entries: entries.enumerated().map { i, e in
                                let object = i == 0 && !firstWhole ? nil : e.object
                                return EntryPlus3(
                                    fileid: e.fileid, name: e.name, cookie: e.cookie,
                                    nameAttributes: PostOpAttr(object.map { FileAttributes3($0.attributes) }),
                                    nameHandle: PostOpFileHandle3(
                                        object.map {
                                            FileHandle3(
                                                ServerFileHandle(
                                                    exportID: 0xab_cdef, clientTag: 0x1234_5678, object: $0.handle
                                                ).bytes)
                                        }))
                            }, eof: eof))
                    let want = NFS3Request.encoded(expected)
                    let got = encoder.encode(
                        replyBytes: want.readableBytes, dirAttributes: withDirAttributes ? dirAttributes : nil,
                        verifier: CookieVerifier3(rawValue: 0x0102_0304_0506_0708), entries: entries[...],
                        firstWhole: firstWhole, eof: eof)
                    #expect(got == want, "dir attributes \(withDirAttributes), first whole \(firstWhole), eof \(eof)")
                }
            }
        }
    }
}
