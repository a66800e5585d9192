import NIOCore
import XDR

@testable import NFS3

/// A value of some XDR type, encoded, with a way to check that decoding gives it back.
struct CodableSample: Sendable, CustomStringConvertible {
    let typeName: String
    let encoded: ByteBuffer
    let decode: @Sendable (inout ByteBuffer) throws(XDRError) -> Bool

    init<T: XDRCodable & Equatable>(_ value: T) {
        self.typeName = "\(T.self)"
        self.encoded = xdrEncoded(value)
        self.decode = { (buffer: inout ByteBuffer) throws(XDRError) -> Bool in try T(xdr: &buffer) == value }
    }

    var description: String { self.typeName }
}

enum Sample {
    static let handle = FileHandle3([0x01, 0x02, 0x03, 0x04, 0x05])
    static let longHandle = FileHandle3(Array(repeating: 0xAB, count: 64))
    static let time = NFSTime3(seconds: 1_700_000_000, nseconds: 123_456_789)
    static let attributes = FileAttributes3(
        type: .reg, mode: 0o644, nlink: 1, uid: 1000, gid: 100, size: 4097, used: 8192,
        rdev: SpecData3(specdata1: 0, specdata2: 0), fsid: 0x1122_3344_5566_7788, fileid: 42,
        atime: time, mtime: NFSTime3(seconds: 5, nseconds: 6), ctime: NFSTime3(seconds: 7, nseconds: 8)
    )
    static let postOp = PostOpAttr(attributes)
    static let wcc = WccData(before: PreOpAttr(WccAttr(size: 1, mtime: time, ctime: time)), after: postOp)
    static let sattr = SetAttributes3(
        mode: 0o755, uid: 7, gid: nil, size: 12, atime: .setToServerTime, mtime: .setToClientTime(time)
    )
    static let dirop = DirOpArgs3(dir: handle, name: Array("hello.txt".utf8))
    static let verifier = Verifier3(rawValue: 0x0102_0304_0506_0708)
    static var data: ByteBuffer { ByteBuffer(bytes: [1, 2, 3, 4, 5, 6, 7]) }

    /// Arguments of each procedure, several shapes where the type is a union.
    static func arguments(_ procedure: NFS3Procedure) -> [CodableSample] {
        switch procedure {
        case .null: return [CodableSample(Null3Args())]
        case .getattr: return [CodableSample(GetAttr3Args(object: longHandle))]
        case .setattr:
            return [
                CodableSample(SetAttr3Args(object: handle, newAttributes: sattr, guardCtime: time)),
                CodableSample(SetAttr3Args(object: handle, newAttributes: .none, guardCtime: nil)),
            ]
        case .lookup: return [CodableSample(Lookup3Args(what: dirop))]
        case .access: return [CodableSample(Access3Args(object: handle, access: 0x3F))]
        case .readlink: return [CodableSample(ReadLink3Args(symlink: handle))]
        case .read: return [CodableSample(Read3Args(file: handle, offset: 1 << 40, count: 65536))]
        case .write:
            return StableHow3.allCases.map {
                CodableSample(Write3Args(file: handle, offset: 3, stable: $0, data: data))
            }
        case .create:
            return [
                CodableSample(Create3Args(where: dirop, how: .unchecked(sattr))),
                CodableSample(Create3Args(where: dirop, how: .guarded(.none))),
                CodableSample(Create3Args(where: dirop, how: .exclusive(verifier))),
            ]
        case .mkdir: return [CodableSample(MkDir3Args(where: dirop, attributes: sattr))]
        case .symlink:
            return [
                CodableSample(
                    Symlink3Args(
                        where: dirop,
                        symlink: SymlinkData3(symlinkAttributes: sattr, symlinkData: Array("../target".utf8))
                    )
                )
            ]
        case .mknod:
            let device = DeviceData3(devAttributes: sattr, spec: SpecData3(specdata1: 8, specdata2: 1))
            return [
                CodableSample(MkNod3Args(where: dirop, what: .chr(device))),
                CodableSample(MkNod3Args(where: dirop, what: .blk(device))),
                CodableSample(MkNod3Args(where: dirop, what: .sock(sattr))),
                CodableSample(MkNod3Args(where: dirop, what: .fifo(.none))),
                CodableSample(MkNod3Args(where: dirop, what: .otherType(FileType3.reg.rawValue))),
                CodableSample(MkNod3Args(where: dirop, what: .otherType(99))),
            ]
        case .remove: return [CodableSample(Remove3Args(object: dirop))]
        case .rmdir: return [CodableSample(RmDir3Args(object: dirop))]
        case .rename:
            return [
                CodableSample(
                    Rename3Args(from: dirop, to: DirOpArgs3(dir: longHandle, name: Array("other".utf8)))
                )
            ]
        case .link:
            return [CodableSample(Link3Args(file: longHandle, link: dirop))]
        case .readdir:
            return [CodableSample(ReadDir3Args(dir: handle, cookie: 77, cookieverf: verifier, count: 4096))]
        case .readdirplus:
            return [
                CodableSample(
                    ReadDirPlus3Args(dir: handle, cookie: 0, cookieverf: .zero, dircount: 1024, maxcount: 8192)
                )
            ]
        case .fsstat: return [CodableSample(FSStat3Args(fsroot: handle))]
        case .fsinfo: return [CodableSample(FSInfo3Args(fsroot: handle))]
        case .pathconf: return [CodableSample(PathConf3Args(object: handle))]
        case .commit: return [CodableSample(Commit3Args(file: handle, offset: 0, count: 0))]
        }
    }

    /// Results of each procedure: success and failure shapes.
    static func results(_ procedure: NFS3Procedure) -> [CodableSample] {
        let createOK = Create3ResOK(obj: PostOpFileHandle3(handle), objAttributes: postOp, dirWcc: wcc)
        let createFail = Create3ResFail(dirWcc: wcc)
        switch procedure {
        case .null: return [CodableSample(Null3Res())]
        case .getattr:
            return [
                CodableSample(GetAttr3Res.ok(GetAttr3ResOK(objAttributes: attributes))),
                CodableSample(GetAttr3Res.fail(.stale, NFS3Void())),
            ]
        case .setattr:
            return [
                CodableSample(SetAttr3Res.ok(SetAttr3ResOK(objWcc: wcc))),
                CodableSample(SetAttr3Res.fail(.notSync, SetAttr3ResFail(objWcc: .absent))),
            ]
        case .lookup:
            return [
                CodableSample(
                    Lookup3Res.ok(Lookup3ResOK(object: longHandle, objAttributes: postOp, dirAttributes: .absent))
                ),
                CodableSample(Lookup3Res.fail(.noent, Lookup3ResFail(dirAttributes: postOp))),
            ]
        case .access:
            return [
                CodableSample(Access3Res.ok(Access3ResOK(objAttributes: postOp, access: 0x1F))),
                CodableSample(Access3Res.fail(.acces, Access3ResFail(objAttributes: .absent))),
            ]
        case .readlink:
            return [
                CodableSample(ReadLink3Res.ok(ReadLink3ResOK(symlinkAttributes: postOp, data: Array("/a/b".utf8)))),
                CodableSample(ReadLink3Res.fail(.inval, ReadLink3ResFail(symlinkAttributes: postOp))),
            ]
        case .read:
            return [
                CodableSample(Read3Res.ok(Read3ResOK(fileAttributes: postOp, eof: true, data: data))),
                CodableSample(Read3Res.ok(Read3ResOK(fileAttributes: .absent, eof: false, data: ByteBuffer()))),
                CodableSample(Read3Res.fail(.isdir, Read3ResFail(fileAttributes: postOp))),
            ]
        case .write:
            return [
                CodableSample(
                    Write3Res.ok(Write3ResOK(fileWcc: wcc, count: 7, committed: .fileSync, verf: verifier))
                ),
                CodableSample(Write3Res.fail(.nospc, Write3ResFail(fileWcc: wcc))),
            ]
        case .create:
            return [
                CodableSample(Create3Res.ok(createOK)),
                CodableSample(Create3Res.ok(Create3ResOK(obj: .absent, objAttributes: .absent, dirWcc: .absent))),
                CodableSample(Create3Res.fail(.exist, createFail)),
            ]
        case .mkdir: return [CodableSample(MkDir3Res.ok(createOK)), CodableSample(MkDir3Res.fail(.exist, createFail))]
        case .symlink:
            return [CodableSample(Symlink3Res.ok(createOK)), CodableSample(Symlink3Res.fail(.rofs, createFail))]
        case .mknod:
            return [CodableSample(MkNod3Res.ok(createOK)), CodableSample(MkNod3Res.fail(.badtype, createFail))]
        case .remove:
            return [
                CodableSample(Remove3Res.ok(Remove3ResOK(dirWcc: wcc))),
                CodableSample(Remove3Res.fail(.noent, Remove3ResFail(dirWcc: wcc))),
            ]
        case .rmdir:
            return [
                CodableSample(RmDir3Res.ok(RmDir3ResOK(dirWcc: wcc))),
                CodableSample(RmDir3Res.fail(.notempty, RmDir3ResFail(dirWcc: wcc))),
            ]
        case .rename:
            return [
                CodableSample(Rename3Res.ok(Rename3ResOK(fromdirWcc: wcc, todirWcc: .absent))),
                CodableSample(Rename3Res.fail(.xdev, Rename3ResFail(fromdirWcc: .absent, todirWcc: wcc))),
            ]
        case .link:
            return [
                CodableSample(Link3Res.ok(Link3ResOK(fileAttributes: postOp, linkdirWcc: wcc))),
                CodableSample(Link3Res.fail(.mlink, Link3ResFail(fileAttributes: .absent, linkdirWcc: wcc))),
            ]
        case .readdir:
            let entries = [
                Entry3(fileid: 1, name: Array(".".utf8), cookie: 1),
                Entry3(fileid: 2, name: Array("..".utf8), cookie: 2),
                Entry3(fileid: 99, name: [0xFF, 0x00, 0x41], cookie: 1 << 62),
            ]
            return [
                CodableSample(
                    ReadDir3Res.ok(
                        ReadDir3ResOK(dirAttributes: postOp, cookieverf: verifier, entries: entries, eof: true)
                    )
                ),
                CodableSample(
                    ReadDir3Res.ok(ReadDir3ResOK(dirAttributes: .absent, cookieverf: .zero, entries: [], eof: false))
                ),
                CodableSample(ReadDir3Res.fail(.badCookie, ReadDir3ResFail(dirAttributes: postOp))),
            ]
        case .readdirplus:
            let entries = [
                EntryPlus3(
                    fileid: 1, name: Array("a".utf8), cookie: 5, nameAttributes: postOp,
                    nameHandle: PostOpFileHandle3(handle)
                ),
                EntryPlus3(
                    fileid: 2, name: Array("bcde".utf8), cookie: 6, nameAttributes: .absent, nameHandle: .absent
                ),
            ]
            return [
                CodableSample(
                    ReadDirPlus3Res.ok(
                        ReadDirPlus3ResOK(dirAttributes: postOp, cookieverf: verifier, entries: entries, eof: false)
                    )
                ),
                CodableSample(ReadDirPlus3Res.fail(.toosmall, ReadDirPlus3ResFail(dirAttributes: .absent))),
            ]
        case .fsstat:
            return [
                CodableSample(
                    FSStat3Res.ok(
                        FSStat3ResOK(
                            objAttributes: postOp, tbytes: 1 << 40, fbytes: 1 << 30, abytes: 1 << 29, tfiles: 1000,
                            ffiles: 900, afiles: 800, invarsec: 0
                        )
                    )
                ),
                CodableSample(FSStat3Res.fail(.io, FSStat3ResFail(objAttributes: .absent))),
            ]
        case .fsinfo:
            return [
                CodableSample(
                    FSInfo3Res.ok(
                        FSInfo3ResOK(
                            objAttributes: postOp, rtmax: 1 << 20, rtpref: 1 << 20, rtmult: 4096, wtmax: 1 << 20,
                            wtpref: 1 << 20, wtmult: 4096, dtpref: 65536, maxfilesize: UInt64(Int64.max),
                            timeDelta: NFSTime3(seconds: 0, nseconds: 1),
                            properties: FSInfoProperties3([.link, .symlink, .homogeneous, .canSetTime]).rawValue
                        )
                    )
                ),
                CodableSample(FSInfo3Res.fail(.stale, FSInfo3ResFail(objAttributes: .absent))),
            ]
        case .pathconf:
            return [
                CodableSample(
                    PathConf3Res.ok(
                        PathConf3ResOK(
                            objAttributes: postOp, linkmax: 65000, nameMax: 255, noTrunc: true,
                            chownRestricted: true, caseInsensitive: false, casePreserving: true
                        )
                    )
                ),
                CodableSample(PathConf3Res.fail(.badhandle, PathConf3ResFail(objAttributes: .absent))),
            ]
        case .commit:
            return [
                CodableSample(Commit3Res.ok(Commit3ResOK(fileWcc: wcc, verf: verifier))),
                CodableSample(Commit3Res.fail(.io, Commit3ResFail(fileWcc: wcc))),
            ]
        }
    }

    static let mountSamples: [CodableSample] = [
        CodableSample(DirPath("/diskless/debian")),
        CodableSample(MountRes3.ok(MountRes3OK(fhandle: longHandle, authFlavors: [1, 0]))),
        CodableSample(MountRes3.fail(.acces)),
        CodableSample(FHStatus1.ok(fhandle: Array(repeating: 7, count: 32))),
        CodableSample(FHStatus1.fail(errno: 13)),
        CodableSample(MountList([])),
        CodableSample(
            MountList([
                MountBody(hostname: Array("10.0.0.5".utf8), directory: DirPath("/a")),
                MountBody(hostname: Array("client".utf8), directory: DirPath("/b/c")),
            ])
        ),
        CodableSample(Exports([])),
        CodableSample(
            Exports([
                ExportNode(
                    directory: DirPath("/diskless/debian"),
                    groups: [Array("10.0.0.0/24".utf8), Array("*".utf8)]
                ),
                ExportNode(directory: DirPath("/x"), groups: []),
            ])
        ),
    ]
}
