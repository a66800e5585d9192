import Foundation
import Glibc
import Testing

@testable import Union

/// Object handles cannot be forged: a tag under a per-namespace secret.
@Suite struct HandleTests {
    @Test func sipHashMatchesTheReferenceVector() {
        // SipHash-2-4 reference: key 00..0f, message 00..07 → 62 24 93 9a 79 f5 f5 93 (little-endian).
        let key = HandleKey(k0: 0x0706_0504_0302_0100, k1: 0x0f0e_0d0c_0b0a_0908)
        #expect(key.tag(0x0706_0504_0302_0100) == 0x93f5_f579_9a93_2462)
        // The same function as the cookies' SipHash of bytes.
        for word: UInt64 in [0, 1, 0xdead_beef, .max] {
            let bytes = withUnsafeBytes(of: word.littleEndian) { Array($0) }
            #expect(key.tag(word) == SipHash24.hash(bytes, CookieKey(k0: key.k0, k1: key.k1)))
        }
    }

    @Test func neighboursFileidWithAGivenTagIsStale() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/secret/file", "S")
        let u = try f.open()
        let secret = try u.h("secret")
        let file = try u.h("secret/file")
        // fileids can be guessed (sequential, or a lower object's derived from its inode): only the tag protects them.
        var forged = secret.bytes
        let next = file.fileid.bigEndian
        withUnsafeBytes(of: next) { for i in 0..<8 { forged[4 + i] = $0[i] } }
        let handle = try #require(ObjectHandle(bytes: forged))
        #expect(handle.fileid == file.fileid)
        #expect(throws: UnionError.stale) { try u.getattr(handle) }
        #expect(try u.getattr(file).fileid == file.fileid)
    }

    @Test func nonzeroReservedBytesAreNotAHandle() throws {
        let f = Fixture()
        let u = try f.open()
        for index in [2, 3] {
            var bytes = u.rootHandle.bytes
            bytes[index] = 1
            #expect(ObjectHandle(bytes: bytes) == nil, "reserved byte \(index)")
        }
        var version1 = u.rootHandle.bytes
        version1[1] = 1
        #expect(ObjectHandle(bytes: version1) == nil)
    }

    @Test func anotherNamespacesHandleIsStaleEvenWithTheSameFileid() throws {
        let a = Fixture()
        let b = Fixture()
        let ua = try a.open()
        let ub = try b.open()
        #expect(ua.rootHandle.fileid == ub.rootHandle.fileid)
        #expect(ua.rootHandle != ub.rootHandle)
        #expect(throws: UnionError.stale) { try ub.getattr(ua.rootHandle) }
    }

    @Test func theKeyIsKeptInTheSidecar() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/a", "A")
        var u = try f.open()
        let before = try u.h("a")
        u.close()
        u = try f.open()
        #expect(try u.getattr(before).fileid == before.fileid)
        #expect(try u.h("a") == before)
    }
}
