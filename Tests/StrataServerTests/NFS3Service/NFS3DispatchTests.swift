import Logging
import NFS3
import NIOCore
import Testing
import Union
import XDR

@testable import StrataServer

/// The dispatcher without a namespace: decoding, procedure numbers, refused file handles.
@Suite struct NFS3DispatchTests {
    static let handle = FileHandle3([0x53, 0x01, 0, 0, 1, 2, 3, 4])
    static let dirop = DirOpArgs3(dir: handle, name: Array("name".utf8))

    /// Encoded arguments of every procedure, all naming `handle`.
    static func arguments(_ procedure: NFS3Procedure) -> ByteBuffer {
        let handle = Self.handle
        let dirop = Self.dirop
        switch procedure {
        case .null: return ByteBuffer()
        case .getattr: return xdrEncoded(GetAttr3Args(object: handle))
        case .setattr: return xdrEncoded(SetAttr3Args(object: handle, newAttributes: SetAttributes3(mode: 0o600)))
        case .lookup: return xdrEncoded(Lookup3Args(what: dirop))
        case .access: return xdrEncoded(Access3Args(object: handle, access: 0x3F))
        case .readlink: return xdrEncoded(ReadLink3Args(symlink: handle))
        case .read: return xdrEncoded(Read3Args(file: handle, offset: 0, count: 10))
        case .write:
            return xdrEncoded(Write3Args(file: handle, offset: 0, stable: .fileSync, data: ByteBuffer(bytes: [1, 2])))
        case .create: return xdrEncoded(Create3Args(where: dirop, how: .guarded(SetAttributes3())))
        case .mkdir: return xdrEncoded(MkDir3Args(where: dirop, attributes: SetAttributes3()))
        case .symlink:
            return xdrEncoded(
                Symlink3Args(
                    where: dirop, symlink: SymlinkData3(symlinkAttributes: SetAttributes3(), symlinkData: [0x61])))
        case .mknod: return xdrEncoded(MkNod3Args(where: dirop, what: .fifo(SetAttributes3())))
        case .remove: return xdrEncoded(Remove3Args(object: dirop))
        case .rmdir: return xdrEncoded(RmDir3Args(object: dirop))
        case .rename: return xdrEncoded(Rename3Args(from: dirop, to: dirop))
        case .link: return xdrEncoded(Link3Args(file: handle, link: dirop))
        case .readdir: return xdrEncoded(ReadDir3Args(dir: handle, cookie: 0, cookieverf: .zero, count: 4096))
        case .readdirplus:
            return xdrEncoded(
                ReadDirPlus3Args(dir: handle, cookie: 0, cookieverf: .zero, dircount: 4096, maxcount: 8192))
        case .fsstat: return xdrEncoded(FSStat3Args(fsroot: handle))
        case .fsinfo: return xdrEncoded(FSInfo3Args(fsroot: handle))
        case .pathconf: return xdrEncoded(PathConf3Args(object: handle))
        case .commit: return xdrEncoded(Commit3Args(file: handle, offset: 0, count: 0))
        }
    }

    /// Decodes a result of `procedure` and returns its status, checking nothing is left over.
    static func decodeStatus(_ procedure: NFS3Procedure, _ reply: ByteBuffer) throws -> NFSStatus3 {
        var buffer = reply
        let status: NFSStatus3
        switch procedure {
        case .null: return .ok
        case .getattr: status = try GetAttr3Res(xdr: &buffer).status
        case .setattr: status = try SetAttr3Res(xdr: &buffer).status
        case .lookup: status = try Lookup3Res(xdr: &buffer).status
        case .access: status = try Access3Res(xdr: &buffer).status
        case .readlink: status = try ReadLink3Res(xdr: &buffer).status
        case .read: status = try Read3Res(xdr: &buffer).status
        case .write: status = try Write3Res(xdr: &buffer).status
        case .create: status = try Create3Res(xdr: &buffer).status
        case .mkdir: status = try MkDir3Res(xdr: &buffer).status
        case .symlink: status = try Symlink3Res(xdr: &buffer).status
        case .mknod: status = try MkNod3Res(xdr: &buffer).status
        case .remove: status = try Remove3Res(xdr: &buffer).status
        case .rmdir: status = try RmDir3Res(xdr: &buffer).status
        case .rename: status = try Rename3Res(xdr: &buffer).status
        case .link: status = try Link3Res(xdr: &buffer).status
        case .readdir: status = try ReadDir3Res(xdr: &buffer).status
        case .readdirplus: status = try ReadDirPlus3Res(xdr: &buffer).status
        case .fsstat: status = try FSStat3Res(xdr: &buffer).status
        case .fsinfo: status = try FSInfo3Res(xdr: &buffer).status
        case .pathconf: status = try PathConf3Res(xdr: &buffer).status
        case .commit: status = try Commit3Res(xdr: &buffer).status
        }
        #expect(buffer.readableBytes == 0, "\(procedure.name) reply has trailing bytes")
        return status
    }

    let service = NFS3Service(writeVerifier: 42)
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func call(
        _ procedure: UInt32, _ arguments: ByteBuffer,
        rejection: CallRejection = .badHandle
    ) -> NFS3Outcome {
        var arguments = arguments
        return self.service.handle(procedure: procedure, arguments: &arguments, logger: self.logger) { _ in
            .failure(rejection)
        }
    }

    @Test func nullAnswersEmptySuccess() {
        #expect(self.call(0, ByteBuffer()) == .success(ByteBuffer()))
    }

    @Test(arguments: [22, 23, 1000, UInt32.max])
    func unknownProcedureIsUnavailable(procedure: UInt32) {
        #expect(self.call(procedure, ByteBuffer()) == .procedureUnavailable)
    }

    @Test(arguments: NFS3Procedure.allCases.filter { $0 != .null })
    func truncatedArgumentsAreGarbage(procedure: NFS3Procedure) {
        let full = Self.arguments(procedure)
        for length in 0..<full.readableBytes {
            let prefix = full.getSlice(at: full.readerIndex, length: length) ?? ByteBuffer()
            #expect(self.call(procedure.rawValue, prefix) == .garbageArguments, "\(procedure.name) \(length) bytes")
        }
    }

    @Test(
        arguments: NFS3Procedure.allCases.filter { $0 != .null },
        [
            (CallRejection.badHandle, NFSStatus3.badhandle), (.stale, .stale), (.accessDenied, .acces),
            (.layerUnavailable("gone"), .io), (.noSuchExport, .stale), (.notDirectory, .stale),
        ])
    func refusedHandleAnswersItsStatus(procedure: NFS3Procedure, refusal: (CallRejection, NFSStatus3)) throws {
        let outcome = self.call(procedure.rawValue, Self.arguments(procedure), rejection: refusal.0)
        guard case .success(let reply) = outcome else {
            Issue.record("\(procedure.name): \(outcome)")
            return
        }
        #expect(try Self.decodeStatus(procedure, reply) == refusal.1)
    }

    @Test(arguments: NFS3Procedure.allCases.filter { $0 != .null })
    func insecurePortIsAnAuthError(procedure: NFS3Procedure) {
        #expect(self.call(procedure.rawValue, Self.arguments(procedure), rejection: .tooWeak) == .authTooWeak)
        #expect(
            self.call(procedure.rawValue, Self.arguments(procedure), rejection: .unsupportedCredential)
                == .authRejectedCredential)
    }

    @Test func oversizedWriteIsGarbage() {
        let data = ByteBuffer(repeating: 0, count: self.service.limits.maxDecodedWriteBytes + 1)
        let args = xdrEncoded(Write3Args(file: Self.handle, offset: 0, stable: .unstable, data: data))
        #expect(self.call(NFS3Procedure.write.rawValue, args) == .garbageArguments)
    }
}

@Suite struct NFS3ErrorMappingTests {
    @Test(
        arguments: [
            (UnionError.noEntry, NFSStatus3.noent), (.exists, .exist), (.notDirectory, .notdir),
            (.isDirectory, .isdir), (.invalid("x"), .inval), (.notEmpty, .notempty), (.nameTooLong, .nametoolong),
            (.badName, .inval), (.accessDenied, .acces), (.notPermitted, .perm), (.readOnly, .rofs),
            (.stale, .stale), (.noSpace, .nospc), (.quotaExceeded, .dquot),
            (.fileTooLarge, .fbig), (.crossDevice, .xdev), (.guardMismatch, .notSync),
            (.notSupported("x"), .notsupp), (.io(errno: 5, call: "pread", path: "a"), .io), (.sidecar("x"), .io),
            (.simulatedCrash(point: "x"), .io),
        ])
    func unionErrorMapsToRFCStatus(error: UnionError, status: NFSStatus3) {
        #expect(NFSStatus3(error) == status)
    }

    @Test func namesAreClassifiedAsKnfsdDoes() {
        #expect(NFSName([0x2E]) == .dot)
        #expect(NFSName([0x2E, 0x2E]) == .dotDot)
        #expect(NFSName([0x2E, 0x2E, 0x2E]) == .regular)
        #expect(NFSName([]) == .invalid)
        #expect(NFSName(Array("a/b".utf8)) == .invalid)
        #expect(NFSName([0x61, 0]) == .invalid)
        #expect(NFSName([UInt8](repeating: 0x61, count: 255)) == .regular)
        #expect(NFSName([UInt8](repeating: 0x61, count: 256)) == .tooLong)
        #expect(NFSName([0x2E]).statusForCreation == .exist)
        #expect(NFSName([0x2E, 0x2E]).statusForRemoval == .acces)
        #expect(NFSName([0x2E]).statusForRename == .perm)
    }

    @Test func unionCookiesNeverCollideWithDotEntries() {
        for unionCookie: UInt64 in [1, 2, 3, 1 << 62, (1 << 63) - 1, (1 << 63) + 100] {
            let wire = DirectoryCookies.wire(fromUnion: unionCookie)
            #expect(wire > DirectoryCookies.afterDotDot)
            #expect(DirectoryCookies.union(fromWire: wire) == unionCookie)
        }
        #expect(DirectoryCookies.union(fromWire: 0) == 0)
        #expect(DirectoryCookies.union(fromWire: 1) == 0)
        #expect(DirectoryCookies.union(fromWire: 2) == 0)
    }
}
