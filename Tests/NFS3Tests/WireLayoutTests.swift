import NIOCore
import Testing
import XDR

@testable import NFS3

/// Encodings checked byte for byte against layouts written out by hand from RFC 1813.
@Suite struct WireLayoutTests {
    private func words(_ values: UInt32...) -> [UInt8] {
        values.flatMap { value in (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32($0))) } }
    }

    private func hyper(_ value: UInt64) -> [UInt8] {
        self.words(UInt32(truncatingIfNeeded: value >> 32), UInt32(truncatingIfNeeded: value))
    }

    private func bytes<T: XDREncodable>(_ value: T) -> [UInt8] {
        Array(xdrEncoded(value).readableBytesView)
    }

    @Test func fattr3IsEightyFourBytesInRFCOrder() {
        let attributes = FileAttributes3(
            type: .chr, mode: 0o620, nlink: 2, uid: 3, gid: 4, size: 0x1_0000_0005, used: 6,
            rdev: SpecData3(specdata1: 7, specdata2: 8), fsid: 9, fileid: 10,
            atime: NFSTime3(seconds: 11, nseconds: 12), mtime: NFSTime3(seconds: 13, nseconds: 14),
            ctime: NFSTime3(seconds: 15, nseconds: 16)
        )
        var expected: [UInt8] = []
        expected += self.words(4, 0o620, 2, 3, 4)  // type NF3CHR, mode, nlink, uid, gid
        expected += self.hyper(0x1_0000_0005) + self.hyper(6)  // size, used
        expected += self.words(7, 8)  // rdev
        expected += self.hyper(9) + self.hyper(10)  // fsid, fileid
        expected += self.words(11, 12, 13, 14, 15, 16)  // atime, mtime, ctime
        #expect(expected.count == 84)
        #expect(self.bytes(attributes) == expected)
        #expect(FileAttributes3.encodedSize == 84)
        #expect(PostOpAttr(attributes).encodedSize == self.bytes(PostOpAttr(attributes)).count)
    }

    @Test func absentOptionalsAreOneFalseWord() {
        #expect(self.bytes(PostOpAttr.absent) == self.words(0))
        #expect(self.bytes(PreOpAttr.absent) == self.words(0))
        #expect(self.bytes(PostOpFileHandle3.absent) == self.words(0))
        #expect(self.bytes(WccData.absent) == self.words(0, 0))
    }

    @Test func lookupArgumentsPadHandleAndName() {
        let args = Lookup3Args(what: DirOpArgs3(dir: FileHandle3([0xAA, 0xBB, 0xCC]), name: Array("hello".utf8)))
        let expected: [UInt8] =
            self.words(3) + [0xAA, 0xBB, 0xCC, 0] + self.words(5) + Array("hello".utf8) + [0, 0, 0]
        #expect(self.bytes(args) == expected)
    }

    @Test func sattr3WithClientTimeAndServerTime() {
        let sattr = SetAttributes3(
            mode: 0o700, uid: nil, gid: 5, size: nil, atime: .setToServerTime,
            mtime: .setToClientTime(NFSTime3(seconds: 1, nseconds: 2))
        )
        // set_mode3 TRUE 0700, set_uid3 FALSE, set_gid3 TRUE 5, set_size3 FALSE,
        // set_atime SET_TO_SERVER_TIME, set_mtime SET_TO_CLIENT_TIME {1, 2}.
        let expected = self.words(1, 0o700, 0, 1, 5, 0, 1, 2, 1, 2)
        #expect(self.bytes(sattr) == expected)
    }

    @Test func writeArgumentsCarryDataAfterStableHow() {
        let args = Write3Args(
            file: FileHandle3([1, 2, 3, 4]), offset: 0x10, stable: .dataSync, data: ByteBuffer(bytes: [9, 8])
        )
        let expected = self.words(4) + [1, 2, 3, 4] + self.hyper(0x10) + self.words(2, 1, 2) + [9, 8, 0, 0]
        #expect(self.bytes(args) == expected)
    }

    @Test func exclusiveCreateCarriesVerifier() {
        let args = Create3Args(
            where: DirOpArgs3(dir: FileHandle3([]), name: Array("f".utf8)),
            how: .exclusive(Verifier3(rawValue: 0x0102_0304_0506_0708))
        )
        let expected = self.words(0, 1) + [UInt8(ascii: "f"), 0, 0, 0] + self.words(2) + [1, 2, 3, 4, 5, 6, 7, 8]
        #expect(self.bytes(args) == expected)
    }

    @Test func readdirReplyIsALinkedListWithEntrySizesAsComputed() {
        let entries = [Entry3(fileid: 5, name: Array("ab".utf8), cookie: 3)]
        let reply = ReadDir3Res.ok(
            ReadDir3ResOK(dirAttributes: .absent, cookieverf: .zero, entries: entries, eof: true)
        )
        var expected = self.words(0)  // NFS3_OK
        expected += self.words(0)  // dir_attributes: none
        expected += self.hyper(0)  // cookieverf
        expected += self.words(1) + self.hyper(5) + self.words(2) + [0x61, 0x62, 0, 0] + self.hyper(3)
        expected += self.words(0, 1)  // no more entries, eof
        #expect(self.bytes(reply) == expected)
        let computed =
            4 + ReadDir3ResOK.emptyEncodedSize(dirAttributes: .absent) + Entry3.encodedSize(nameLength: 2)
        #expect(computed == expected.count)
    }

    @Test func readdirplusEntrySizeMatchesEncoding() {
        let entry = EntryPlus3(
            fileid: 1, name: Array("name".utf8), cookie: 9, nameAttributes: Sample.postOp,
            nameHandle: PostOpFileHandle3(Sample.handle)
        )
        // encodedSize includes the value-follows word that precedes the entry in the list.
        #expect(entry.encodedSize == 4 + self.bytes(entry).count)
    }

    @Test func failureCarriesStatusThenBody() {
        let reply = Lookup3Res.fail(.noent, Lookup3ResFail(dirAttributes: .absent))
        #expect(self.bytes(reply) == self.words(2, 0))
        let getattr = GetAttr3Res.fail(.stale, NFS3Void())
        #expect(self.bytes(getattr) == self.words(70))
        #expect(getattr.status == .stale)
    }

    @Test func mountReplyAndV1HandleLayouts() {
        let reply = MountRes3.ok(MountRes3OK(fhandle: FileHandle3([1, 2, 3, 4, 5]), authFlavors: [1]))
        #expect(self.bytes(reply) == self.words(0, 5) + [1, 2, 3, 4, 5, 0, 0, 0] + self.words(1, 1))
        #expect(self.bytes(MountRes3.fail(.acces)) == self.words(13))
        let v1 = FHStatus1.ok(fhandle: [1, 2])
        #expect(self.bytes(v1) == self.words(0) + [1, 2] + Array(repeating: 0, count: 30))
        let exports = Exports([ExportNode(directory: DirPath("/e"), groups: [Array("*".utf8)])])
        let expected =
            self.words(1, 2) + [0x2F, 0x65, 0, 0] + self.words(1, 1) + [0x2A, 0, 0, 0] + self.words(0) + self.words(0)
        #expect(self.bytes(exports) == expected)
    }

    @Test(arguments: NFSStatus3.allCases)
    func statusValuesMatchRFC(status: NFSStatus3) {
        let rfc: [NFSStatus3: UInt32] = [
            .ok: 0, .perm: 1, .noent: 2, .io: 5, .nxio: 6, .acces: 13, .exist: 17, .xdev: 18, .nodev: 19,
            .notdir: 20, .isdir: 21, .inval: 22, .fbig: 27, .nospc: 28, .rofs: 30, .mlink: 31,
            .nametoolong: 63, .notempty: 66, .dquot: 69, .stale: 70, .remote: 71, .badhandle: 10001,
            .notSync: 10002, .badCookie: 10003, .notsupp: 10004, .toosmall: 10005, .serverfault: 10006,
            .badtype: 10007, .jukebox: 10008,
        ]
        #expect(rfc[status] == status.rawValue)
        #expect(self.bytes(status) == self.words(status.rawValue))
    }

    @Test func verifierBytesAreBigEndian() {
        let verifier = Verifier3(rawValue: 0x0102_0304_0506_0708)
        #expect(verifier.bytes == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Verifier3(bytes: verifier.bytes) == verifier)
        #expect(Verifier3(bytes: [1, 2, 3]) == nil)
        #expect(self.bytes(verifier) == verifier.bytes)
    }
}

/// Limits: what decodes, what is refused before allocation.
@Suite struct DecodeLimitTests {
    @Test func nameLongerThanNameMaxStillDecodes() throws {
        // The server must answer NAMETOOLONG, not GARBAGE_ARGS (RFC 1813 §3.3.3).
        let name = [UInt8](repeating: 0x61, count: 300)
        var buffer = xdrEncoded(Lookup3Args(what: DirOpArgs3(dir: Sample.handle, name: name)))
        let decoded = try Lookup3Args(xdr: &buffer)
        #expect(decoded.what.name == name)
    }

    @Test func hugeNameLengthIsRefused() {
        var buffer = ByteBuffer()
        Sample.handle.encode(xdr: &buffer)
        buffer.writeXDR(UInt32(NFS3.maxDecodedNameBytes + 1))
        let expected = XDRError.lengthTooLarge(
            length: UInt32(NFS3.maxDecodedNameBytes + 1),
            limit: NFS3.maxDecodedNameBytes
        )
        #expect(throws: expected) {
            _ = try Lookup3Args(xdr: &buffer)
        }
    }

    @Test func handleOverSixtyFourBytesIsRefused() {
        var buffer = xdrEncoded(FileHandle3(Array(repeating: 1, count: 65)))
        #expect(throws: XDRError.self) { _ = try GetAttr3Args(xdr: &buffer) }
    }

    @Test func writeDataLimitIsEnforcedBeforeReadingData() {
        var buffer = xdrEncoded(
            Write3Args(file: Sample.handle, offset: 0, stable: .unstable, data: ByteBuffer(repeating: 1, count: 100))
        )
        #expect(throws: XDRError.lengthTooLarge(length: 100, limit: 99)) {
            _ = try Write3Args(xdr: &buffer, maxDataBytes: 99)
        }
    }

    @Test func writeDataIsASliceOfTheRequest() throws {
        var buffer = xdrEncoded(
            Write3Args(file: Sample.handle, offset: 0, stable: .unstable, data: ByteBuffer(repeating: 7, count: 10))
        )
        let args = try Write3Args(xdr: &buffer)
        #expect(args.count == 10)
        #expect(args.data == ByteBuffer(repeating: 7, count: 10))
    }

    @Test func unknownMknodTypeDecodesForBadType() throws {
        var buffer = ByteBuffer()
        Sample.dirop.encode(xdr: &buffer)
        buffer.writeXDR(UInt32(42))
        let args = try MkNod3Args(xdr: &buffer)
        #expect(args.what == .otherType(42))
    }

    @Test func invalidEnumsAreRefused() {
        var status = ByteBuffer()
        status.writeXDR(UInt32(3))
        #expect(throws: XDRError.invalidEnum(type: "nfsstat3", value: 3)) { _ = try NFSStatus3(xdr: &status) }
        var how = ByteBuffer()
        how.writeXDR(UInt32(3))
        #expect(throws: XDRError.self) { _ = try CreateHow3(xdr: &how) }
        var stable = ByteBuffer()
        stable.writeXDR(UInt32(3))
        #expect(throws: XDRError.self) { _ = try StableHow3(xdr: &stable) }
        var time = ByteBuffer()
        time.writeXDR(UInt32(3))
        #expect(throws: XDRError.self) { _ = try SetTime3(xdr: &time) }
    }

    @Test func dirpathLongerThanMNTPATHLENIsRefused() {
        var buffer = xdrEncoded(DirPath(Array(repeating: 0x2F, count: 1025)))
        #expect(throws: XDRError.self) { _ = try DirPath(xdr: &buffer) }
    }

    @Test(arguments: NFS3Procedure.allCases)
    func nonIdempotentProceduresAreTheMutatingOnes(procedure: NFS3Procedure) {
        let mutating: Set<NFS3Procedure> = [
            .setattr, .write, .create, .mkdir, .symlink, .mknod, .remove, .rmdir, .rename, .link,
        ]
        #expect(procedure.isNonIdempotent == mutating.contains(procedure))
    }
}
