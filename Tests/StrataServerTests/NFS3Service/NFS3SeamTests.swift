import Foundation
import Glibc
import NFS3
import NIOCore
import TestSupport
import Testing
import Union
import XDR

@testable import StrataServer

/// The request path's seam: what one union call answers must be what the single-purpose calls
/// answer, handles are not forgeable, and listings are bounded by bytes.
@Suite struct NFS3SeamTests {
    static let user = Credentials(uid: 1000, gid: 1000, groups: [])

    static func harness() throws -> NFS3Harness {
        try NFS3Harness(lowerFiles: [
            "merged/lower-a": "a", "merged/lower-b": "bb", "merged/sub/deep": "d", "solo/x": "x",
        ])
    }

    static func readdirplus(
        _ harness: NFS3Harness, _ dir: FileHandle3, cookie: UInt64 = 0, dircount: UInt32 = 65536,
        maxcount: UInt32 = 65536
    ) throws -> ReadDirPlus3ResOK {
        let result = try harness.call(
            .readdirplus,
            ReadDirPlus3Args(dir: dir, cookie: cookie, cookieverf: .zero, dircount: dircount, maxcount: maxcount),
            as: ReadDirPlus3Res.self)
        guard case .ok(let page) = result else { throw NFS3Harness.HarnessError.unexpected("\(result.status)") }
        return page
    }

    /// A merged directory (names in the upper and the lower, a copied-up file, a subdirectory,
    /// a symlink, a hard link): every entry's attributes in a READDIRPLUS page are GETATTR's.
    @Test func readdirplusAttributesAreGetattrs() throws {
        let harness = try Self.harness()
        let merged = try harness.handle("merged")
        _ = try harness.createFile("upper-c", in: merged)
        _ = try harness.call(
            .mkdir, MkDir3Args(where: DirOpArgs3(dir: merged, name: Array("upper-dir".utf8)), attributes: .init()),
            as: MkDir3Res.self)
        _ = try harness.symlink("link", to: Array("lower-a".utf8), in: merged)
        let lowerB = try harness.handle("lower-b", in: merged)
        _ = try harness.call(
            .link, Link3Args(file: lowerB, link: DirOpArgs3(dir: merged, name: Array("hard-b".utf8))),
            as: Link3Res.self)
        _ = try harness.call(
            .setattr,
            SetAttr3Args(object: try harness.handle("lower-a", in: merged), newAttributes: .init(mode: 0o600)),
            as: SetAttr3Res.self)
        let page = try Self.readdirplus(harness, merged)
        #expect(page.eof)
        let names = Set(page.entries.map { String(decoding: $0.name, as: UTF8.self) })
        #expect(names == [".", "..", "lower-a", "lower-b", "sub", "upper-c", "upper-dir", "link", "hard-b"])
        #expect(page.dirAttributes.attributes == (try harness.attributes(merged)))
        for entry in page.entries {
            let name = String(decoding: entry.name, as: UTF8.self)
            let handle = try #require(entry.nameHandle.handle, "\(name) has a handle")
            let attributes = try #require(entry.nameAttributes.attributes, "\(name) has attributes")
            #expect(attributes == (try harness.attributes(handle)), "\(name)")
            #expect(attributes.fileid == entry.fileid, "\(name)")
            if name != "." && name != ".." {
                #expect(handle == (try harness.handle(name, in: merged)), "\(name): the handle LOOKUP gives")
            }
        }
        // Warm (the listing cached): the same answers.
        let again = try Self.readdirplus(harness, merged)
        #expect(again.entries == page.entries)
    }

    /// A warm READDIRPLUS page (handles and attributes kept with the cached listing) still gives
    /// GETATTR's attributes after each kind of step that changes one: CREATE, WRITE, a READ or
    /// READLINK that moves an access time, SETATTR, a listing of a subdirectory.
    @Test func warmReaddirplusFollowsEveryAttributeChange() throws {
        let harness = try Self.harness()
        let merged = try harness.handle("merged")
        func expectPageIsGetattrs(_ step: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            for pass in 0..<2 {  // the first page may keep the objects, the second uses them
                let page = try Self.readdirplus(harness, merged)
                for entry in page.entries {
                    let name = String(decoding: entry.name, as: UTF8.self)
                    let handle = try #require(entry.nameHandle.handle, "\(step): \(name) has a handle")
                    #expect(
                        entry.nameAttributes.attributes == (try harness.attributes(handle)),
                        "\(step), pass \(pass): \(name)", sourceLocation: sourceLocation)
                }
            }
        }
        try expectPageIsGetattrs("cold")
        guard case .ok(let made) = try harness.createFile("upper-c", in: merged), let upperC = made.obj.handle else {
            throw NFS3Harness.HarnessError.unexpected("create failed")
        }
        try expectPageIsGetattrs("create")
        _ = try harness.call(
            .write,
            Write3Args(
                file: upperC, offset: 0, stable: .unstable, data: ByteBuffer(bytes: Array(repeating: 7, count: 100))),
            as: Write3Res.self)
        try expectPageIsGetattrs("write")
        _ = try harness.call(
            .read, Read3Args(file: try harness.handle("lower-b", in: merged), offset: 0, count: 10), as: Read3Res.self)
        try expectPageIsGetattrs("read")
        _ = try harness.symlink("link", to: Array("lower-a".utf8), in: merged)
        try expectPageIsGetattrs("symlink")
        _ = try harness.call(
            .readlink, ReadLink3Args(symlink: try harness.handle("link", in: merged)), as: ReadLink3Res.self)
        try expectPageIsGetattrs("readlink")
        _ = try harness.call(
            .setattr,
            SetAttr3Args(object: try harness.handle("lower-a", in: merged), newAttributes: .init(mode: 0o600)),
            as: SetAttr3Res.self)
        try expectPageIsGetattrs("setattr")
        _ = try Self.readdirplus(harness, try harness.handle("sub", in: merged))
        try expectPageIsGetattrs("listing of sub")
    }

    /// GETATTR and ACCESS answered on the event loop (from the union's caches) are the pool's
    /// answers, byte for byte; an object the node cache does not hold (a copy-up evicted it), a
    /// removed object and a forged handle are left to the pool.
    @Test func inlineAnswersAreThePoolsAnswers() throws {
        let harness = try Self.harness()
        let merged = try harness.handle("merged")
        let lowerA = try harness.handle("lower-a", in: merged)  // LOOKUP caches the nodes
        func expectSame(_ handle: FileHandle3, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let getattr = GetAttr3Args(object: handle)
            let inline = harness.inlineOutcome(.getattr, getattr)
            #expect(inline != nil, "\(what) answered inline", sourceLocation: sourceLocation)
            #expect(inline == harness.outcome(.getattr, getattr), "\(what)", sourceLocation: sourceLocation)
            for credentials in [Credentials.root, Self.user] {
                harness.credentials = credentials
                let access = Access3Args(object: handle, access: 0x3f)
                #expect(
                    harness.inlineOutcome(.access, access) == harness.outcome(.access, access), "\(what)",
                    sourceLocation: sourceLocation)
            }
            harness.credentials = .root
        }
        expectSame(harness.root(), "root")
        expectSame(merged, "merged")
        expectSame(lowerA, "lower-a")
        harness.isReadOnly = true
        expectSame(lowerA, "lower-a read-only")
        harness.isReadOnly = false

        // SETATTR copies lower-a up: the inline answer shows the copy and its new mode.
        _ = try harness.call(
            .setattr, SetAttr3Args(object: lowerA, newAttributes: .init(mode: 0o600)), as: SetAttr3Res.self)
        expectSame(lowerA, "lower-a after its copy-up")
        #expect(try harness.attributes(lowerA).mode == 0o600)

        // A handle from a READDIRPLUS page names an object the node cache does not hold yet:
        // declined (finding it may read directories), until a pool call resolved it.
        let page = try Self.readdirplus(harness, merged)
        let lowerB = try #require(page.entries.first { $0.name == Array("lower-b".utf8) }?.nameHandle.handle)
        #expect(harness.inlineOutcome(.getattr, GetAttr3Args(object: lowerB)) == nil)
        _ = try harness.attributes(lowerB)
        expectSame(lowerB, "lower-b once resolved")

        // Removed: declined (the pool answers STALE).
        _ = try harness.call(
            .remove, Remove3Args(object: DirOpArgs3(dir: merged, name: Array("lower-a".utf8))), as: Remove3Res.self)
        #expect(harness.inlineOutcome(.getattr, GetAttr3Args(object: lowerA)) == nil)
        guard case .fail(.stale, _) = try harness.call(.getattr, GetAttr3Args(object: lowerA), as: GetAttr3Res.self)
        else {
            Issue.record("GETATTR of a removed file is not STALE")
            return
        }

        // A forged handle (its tag changed), a name not looked up since the last change, other procedures: declined.
        var forged = merged
        forged.data[forged.data.count - 1] ^= 0x5a
        #expect(harness.inlineOutcome(.getattr, GetAttr3Args(object: forged)) == nil)
        #expect(
            harness.inlineOutcome(.lookup, Lookup3Args(what: DirOpArgs3(dir: merged, name: Array("sub".utf8)))) == nil)
        #expect(harness.inlineOutcome(.readlink, ReadLink3Args(symlink: merged)) == nil)
    }

    /// LOOKUP answered on the event loop (a name the lookup cache knows, found or not) is the
    /// pool's answer, byte for byte; what the caches do not know, ".", "..", a caller who may not
    /// search the directory, and anything after a change until the pool looked again: declined.
    @Test func inlineLookupsAreThePoolsLookups() throws {
        let harness = try Self.harness()
        let merged = try harness.handle("merged")
        func args(_ name: String, in dir: FileHandle3? = nil) -> Lookup3Args {
            Lookup3Args(what: DirOpArgs3(dir: dir ?? merged, name: Array(name.utf8)))
        }
        func expectSame(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let inline = harness.inlineOutcome(.lookup, args(name))
            #expect(inline != nil, "\(name) answered inline", sourceLocation: sourceLocation)
            #expect(inline == harness.outcome(.lookup, args(name)), "\(name)", sourceLocation: sourceLocation)
        }
        for name in ["lower-a", "sub", "missing"] {
            #expect(harness.inlineOutcome(.lookup, args(name)) == nil, "\(name) not looked up yet")
            _ = harness.outcome(.lookup, args(name))
            expectSame(name)
        }
        guard case .fail(.noent, _) = try harness.lookup("missing", in: merged) else {
            Issue.record("LOOKUP of a missing name is not NOENT")
            return
        }
        for name in [".", ".."] {
            _ = harness.outcome(.lookup, args(name))
            #expect(harness.inlineOutcome(.lookup, args(name)) == nil, "\(name)")
        }

        // Without search permission on the directory: declined; the pool answers ACCES.
        _ = try harness.call(
            .setattr, SetAttr3Args(object: merged, newAttributes: .init(mode: 0o744)), as: SetAttr3Res.self)
        _ = harness.outcome(.lookup, args("lower-a"))
        harness.credentials = Self.user
        #expect(harness.inlineOutcome(.lookup, args("lower-a")) == nil)
        harness.credentials = .root

        // A change (the name made): declined until the pool looked again, then the new object.
        _ = try harness.call(
            .create,
            Create3Args(where: DirOpArgs3(dir: merged, name: Array("missing".utf8)), how: .unchecked(.init())),
            as: Create3Res.self)
        #expect(harness.inlineOutcome(.lookup, args("missing")) == nil)
        guard case .ok = try harness.lookup("missing", in: merged) else {
            Issue.record("LOOKUP of a created name failed")
            return
        }
        expectSame("missing")
    }

    /// A caller who may read but not search a directory gets its names, never
    /// a handle or attributes (LOOKUP refuses them), as knfsd.
    @Test func readdirplusWithoutSearchPermissionGivesNoHandles() throws {
        let harness = try Self.harness()
        let solo = try harness.handle("solo")
        _ = try harness.call(
            .setattr, SetAttr3Args(object: solo, newAttributes: .init(mode: 0o744)), as: SetAttr3Res.self)
        harness.credentials = Self.user
        let lookup = try harness.lookup("x", in: solo)
        #expect(lookup.status == .acces)
        let page = try Self.readdirplus(harness, solo)
        let names = page.entries.map { String(decoding: $0.name, as: UTF8.self) }
        #expect(Set(names) == [".", "..", "x"])
        for entry in page.entries where entry.name != [0x2E] {
            #expect(entry.nameHandle.handle == nil, "\(String(decoding: entry.name, as: UTF8.self))")
            #expect(entry.nameAttributes.attributes == nil, "\(String(decoding: entry.name, as: UTF8.self))")
        }
        // With search permission the same caller gets them.
        harness.credentials = .root
        _ = try harness.call(
            .setattr, SetAttr3Args(object: solo, newAttributes: .init(mode: 0o755)), as: SetAttr3Res.self)
        harness.credentials = Self.user
        let open = try Self.readdirplus(harness, solo)
        #expect(open.entries.allSatisfy { $0.nameHandle.handle != nil && $0.nameAttributes.attributes != nil })
    }

    /// The handle of `secret` with the fileid of another object (`secret/file`; fileids are not sequential, so a
    /// forger copies one) is refused; so are nonzero reserved bytes and a handle of another length.
    @Test func forgedHandlesAreRefused() throws {
        let harness = try NFS3Harness(lowerFiles: ["secret/file": "s"])
        let secret = try harness.handle("secret")
        let file = try harness.handle("file", in: secret)
        var forged = secret.data
        // Server header (8 bytes), then 'S', version, two reserved bytes, the fileid.
        let fileidRange = 12..<20
        let fileid = forged[fileidRange].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let fileFileid = file.data[fileidRange].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(fileFileid != fileid)
        for (i, byte) in zip(fileidRange, file.data[fileidRange]) { forged[i] = byte }
        let status = try harness.call(.getattr, GetAttr3Args(object: FileHandle3(forged)), as: GetAttr3Res.self).status
        #expect(status == .stale || status == .badhandle)
        let read = try harness.call(
            .read, Read3Args(file: FileHandle3(forged), offset: 0, count: 10), as: Read3Res.self)
        #expect(read.status == .stale || read.status == .badhandle)

        for index in [10, 11] {
            var reserved = file.data
            reserved[index] = 1
            let answer = try harness.call(
                .getattr, GetAttr3Args(object: FileHandle3(reserved)), as: GetAttr3Res.self)
            #expect(answer.status == .badhandle, "reserved byte \(index)")
        }
        for bytes in [Array(file.data.dropLast()), file.data + [0], file.data + [UInt8](repeating: 0, count: 36)] {
            let answer = try harness.call(.getattr, GetAttr3Args(object: FileHandle3(bytes)), as: GetAttr3Res.self)
            #expect(answer.status == .badhandle, "\(bytes.count) bytes")
        }
        #expect(file.data.count <= 64)
    }

    /// READDIR and READDIRPLUS replies are capped by bytes whatever count the
    /// client asks (2^32-1 included), and the listing still completes page by page.
    @Test func listingRepliesAreCappedByBytes() throws {
        var files: [String: String] = [:]
        for index in 0..<300 { files["big/entry-with-a-long-name-\(index)"] = "" }
        let harness = try NFS3Harness(lowerFiles: files)
        harness.service.limits.maxReaddirReplyBytes = 4096
        let big = try harness.handle("big")
        var seen: Set<[UInt8]> = []
        var cookie: UInt64 = 0
        for _ in 0..<1000 {
            let args = ReadDir3Args(dir: big, cookie: cookie, cookieverf: .zero, count: .max)
            #expect(harness.replyBytes(.readdir, args) <= 4096)
            let result = try harness.call(.readdir, args, as: ReadDir3Res.self)
            let page = try #require(result.success, "READDIR answered \(result.status)")
            seen.formUnion(page.entries.map(\.name))
            if page.eof { break }
            cookie = try #require(page.entries.last).cookie
        }
        #expect(seen.count == 302)
        seen = []
        cookie = 0
        for _ in 0..<1000 {
            let args = ReadDirPlus3Args(dir: big, cookie: cookie, cookieverf: .zero, dircount: .max, maxcount: .max)
            #expect(harness.replyBytes(.readdirplus, args) <= 4096)
            let page = try Self.readdirplus(harness, big, cookie: cookie, dircount: .max, maxcount: .max)
            seen.formUnion(page.entries.map(\.name))
            if page.eof { break }
            cookie = try #require(page.entries.last).cookie
        }
        #expect(seen.count == 302)
    }

    /// READ lands the bytes in the reply once: exact data, padding, EOF and the attributes.
    @Test(arguments: [0, 1, 3, 4, 5, 11])
    func readReplyIsExact(count: Int) throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "hello world"])
        let file = try harness.handle("f")
        let args = Read3Args(file: file, offset: 0, count: UInt32(count))
        let result = try harness.call(.read, args, as: Read3Res.self)
        let ok = try #require(result.success, "READ answered \(result.status)")
        #expect(ok.data == ByteBuffer(bytes: Array("hello world".utf8.prefix(count))))
        #expect(ok.count == UInt32(count))
        #expect(ok.eof == (count >= 11))
        #expect(ok.fileAttributes.attributes == (try harness.attributes(file)))
        #expect(harness.replyBytes(.read, args) % 4 == 0)
        let past = try harness.call(.read, Read3Args(file: file, offset: 100, count: 10), as: Read3Res.self)
        let empty = try #require(past.success, "READ past the end answered \(past.status)")
        #expect(empty.data.readableBytes == 0 && empty.eof)
    }
}

/// The per-client check runs on every call with its own byte search: it must answer as
/// `String.contains` would.
@Suite struct PerClientUpperTests {
    @Test(arguments: [
        ("/srv/clients/{client}", true), ("/srv/{client}/upper", true), ("{client}", true), ("/srv/{clien}", false),
        ("/srv/client", false), ("/srv/{{client}", true), ("", false), ("/srv/{client", false),
    ])
    func placeholderIsFound(upper: String, expected: Bool) throws {
        var configuration = try Configuration(toml: exportTable("/a"))
        configuration.exports[0].upper = upper
        #expect(configuration.exports[0].hasPerClientUpper == expected)
        #expect(expected == upper.contains("{client}"))
        configuration.exports[0].upper = nil
        #expect(!configuration.exports[0].hasPerClientUpper)
    }
}
