import Foundation
import NFS3
import NIOCore
import TestSupport
import Testing
import Union
import XDR

@testable import StrataServer

/// Every procedure against a real union namespace.
@Suite struct NFS3HandlerTests {
    // MARK: Reading

    @Test func getattrOfRootIsADirectory() throws {
        let harness = try NFS3Harness()
        let attributes = try harness.attributes(harness.root())
        #expect(attributes.type == .dir)
    }

    @Test func lookupFindsLowerFileWithAttributes() throws {
        let harness = try NFS3Harness(lowerFiles: ["hello.txt": "hello"])
        let found = try #require(harness.lookup("hello.txt").success, "lookup failed")
        #expect(found.objAttributes.attributes?.type == .reg)
        #expect(found.objAttributes.attributes?.size == 5)
        #expect(found.dirAttributes.attributes?.type == .dir)
        #expect(found.object.data.count <= NFS3.fileHandleMaxBytes)
    }

    @Test func lookupOfMissingNameIsNoentWithDirectoryAttributes() throws {
        let harness = try NFS3Harness()
        let (status, body) = try #require(harness.lookup("missing").failure, "lookup succeeded")
        #expect(status == .noent)
        #expect(body.dirAttributes.attributes != nil)
    }

    @Test func lookupOfDotAndDotDotAtRootIsRoot() throws {
        let harness = try NFS3Harness()
        let root = try harness.attributes(harness.root())
        for name in [".", ".."] {
            let found = try #require(harness.lookup(name).success, "lookup \(name) failed")
            #expect(found.objAttributes.attributes?.fileid == root.fileid)
        }
    }

    @Test func lookupOfDotDotInSubdirectoryIsParent() throws {
        let harness = try NFS3Harness(lowerFiles: ["sub/file": "x"])
        let sub = try harness.handle("sub")
        let root = try harness.attributes(harness.root())
        let parent = try #require(harness.lookup("..", in: sub).success, "lookup .. failed")
        #expect(parent.objAttributes.attributes?.fileid == root.fileid)
        let itself = try #require(harness.lookup(".", in: sub).success, "lookup . failed")
        #expect(itself.object == sub)
    }

    @Test(arguments: [
        (String(repeating: "n", count: 256), NFSStatus3.nametoolong), ("a/b", .inval), ("", .inval), ("a\0", .inval),
    ])
    func lookupOfBadNames(name: String, status: NFSStatus3) throws {
        let harness = try NFS3Harness()
        #expect(try harness.lookup(name).status == status)
    }

    @Test func lookupInAFileIsNotdir() throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "x"])
        let file = try harness.handle("f")
        #expect(try harness.lookup("x", in: file).status == .notdir)
    }

    @Test func readReturnsDataAndEOF() throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "hello world"])
        let file = try harness.handle("f")
        let all = try #require(
            try harness.call(.read, Read3Args(file: file, offset: 0, count: 100), as: Read3Res.self).success)
        #expect(all.data == ByteBuffer(string: "hello world"))
        #expect(all.count == 11)
        #expect(all.eof)
        #expect(all.fileAttributes.attributes?.size == 11)
        let part = try #require(
            try harness.call(.read, Read3Args(file: file, offset: 2, count: 3), as: Read3Res.self).success)
        #expect(part.data == ByteBuffer(string: "llo"))
        #expect(!part.eof)
        let beyond = try #require(
            try harness.call(.read, Read3Args(file: file, offset: 50, count: 3), as: Read3Res.self).success)
        #expect(beyond.count == 0)
        #expect(beyond.eof)
    }

    @Test func readOfDirectoryIsIsdir() throws {
        let harness = try NFS3Harness()
        #expect(
            try harness.call(.read, Read3Args(file: harness.root(), offset: 0, count: 1), as: Read3Res.self).status
                == .isdir)
    }

    @Test func accessAsRootAndAsOtherUser() throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "x"])
        let file = try harness.handle("f")
        let all = Access3.read.rawValue | Access3.modify.rawValue | Access3.extend.rawValue | Access3.execute.rawValue
        let asRoot = try #require(
            try harness.call(.access, Access3Args(object: file, access: all), as: Access3Res.self).success)
        #expect(Access3(rawValue: asRoot.access).isSuperset(of: [.read, .modify, .extend]))
        #expect(asRoot.objAttributes.attributes != nil)
        harness.credentials = Credentials(uid: 1000, gid: 1000, groups: [])
        let asUser = try #require(
            try harness.call(.access, Access3Args(object: file, access: all), as: Access3Res.self).success)
        // The lower file is 0644 root:root (created by the test as root).
        #expect(Access3(rawValue: asUser.access) == [.read])
    }

    @Test func fsinfoAdvertisesOneMebibyteTransfers() throws {
        let harness = try NFS3Harness()
        let info = try #require(
            try harness.call(.fsinfo, FSInfo3Args(fsroot: harness.root()), as: FSInfo3Res.self).success, "fsinfo failed"
        )
        #expect(info.rtmax == 1 << 20)
        #expect(info.wtmax == 1 << 20)
        #expect(info.rtpref == 1 << 20)
        #expect(info.wtpref == 1 << 20)
        #expect(info.dtpref == 64 << 10)
        #expect(info.maxfilesize == UInt64(Int64.max))
        #expect(info.timeDelta == NFSTime3(seconds: 0, nseconds: 1))
        #expect(
            FSInfoProperties3(rawValue: info.properties) == [.link, .symlink, .homogeneous, .canSetTime])
        #expect(info.objAttributes.attributes != nil)
    }

    @Test func fsstatAndPathconf() throws {
        let harness = try NFS3Harness()
        let stat = try #require(
            try harness.call(.fsstat, FSStat3Args(fsroot: harness.root()), as: FSStat3Res.self).success, "fsstat failed"
        )
        #expect(stat.tbytes > 0)
        #expect(stat.fbytes <= stat.tbytes)
        let conf = try #require(
            try harness.call(.pathconf, PathConf3Args(object: harness.root()), as: PathConf3Res.self).success)
        #expect(conf.nameMax == 255)
        #expect(conf.noTrunc)
        #expect(conf.chownRestricted)
        #expect(!conf.caseInsensitive)
        #expect(conf.casePreserving)
    }

    // MARK: Creating

    @Test func guardedCreateThenExistAndUncheckedSucceeds() throws {
        let harness = try NFS3Harness()
        let created = try #require(harness.createFile("new").success, "create failed")
        #expect(created.obj.handle != nil)
        #expect(created.objAttributes.attributes?.type == .reg)
        #expect(created.objAttributes.attributes?.mode == 0o644)
        #expect(created.dirWcc.isComplete)
        let (status, body) = try #require(harness.createFile("new").failure, "second guarded create succeeded")
        #expect(status == .exist)
        #expect(body.dirWcc.isComplete)
        #expect(try harness.createFile("new", how: .unchecked(SetAttributes3())).status == .ok)
    }

    @Test func exclusiveCreateRetransmissionSucceedsAndOtherVerifierIsExist() throws {
        let harness = try NFS3Harness()
        let verifier = Verifier3(rawValue: 0x1122_3344_5566_7788)
        let first = try #require(harness.createFile("x", how: .exclusive(verifier)).success, "exclusive create failed")
        let again = try #require(
            harness.createFile("x", how: .exclusive(verifier)).success, "retransmitted exclusive create failed")
        #expect(again.obj.handle == first.obj.handle)
        #expect(again.objAttributes.attributes?.fileid == first.objAttributes.attributes?.fileid)
        #expect(try harness.createFile("x", how: .exclusive(Verifier3(rawValue: 1))).status == .exist)
    }

    @Test(arguments: [
        (".", NFSStatus3.exist), ("..", .exist), ("a/b", .inval), ("", .inval),
        (String(repeating: "n", count: 256), .nametoolong),
    ])
    func createRefusesBadNames(name: String, status: NFSStatus3) throws {
        let harness = try NFS3Harness()
        let (got, body) = try #require(harness.createFile(name).failure, "create of \(name) succeeded")
        #expect(got == status)
        #expect(body.dirWcc.isComplete)
        let mkdir = try harness.call(
            .mkdir, MkDir3Args(where: DirOpArgs3(dir: harness.root(), name: Array(name.utf8)), attributes: .none),
            as: MkDir3Res.self)
        #expect(mkdir.status == status)
    }

    @Test func mkdirSymlinkReadlink() throws {
        let harness = try NFS3Harness()
        let dir = try #require(
            try harness.call(
                .mkdir,
                MkDir3Args(
                    where: DirOpArgs3(dir: harness.root(), name: Array("d".utf8)),
                    attributes: SetAttributes3(mode: 0o750)), as: MkDir3Res.self
            ).success)
        #expect(dir.objAttributes.attributes?.type == .dir)
        #expect(dir.objAttributes.attributes?.mode == 0o750)
        #expect(dir.dirWcc.isComplete)
        let target: [UInt8] = Array("../some/where".utf8) + [0xFF]
        let link = try #require(try harness.symlink("l", to: target, attributes: .none).success)
        #expect(link.objAttributes.attributes?.type == .lnk)
        let handle = try #require(link.obj.handle)
        let read = try #require(
            try harness.call(.readlink, ReadLink3Args(symlink: handle), as: ReadLink3Res.self).success,
            "readlink failed")
        #expect(read.data == target)
        #expect(read.symlinkAttributes.attributes?.type == .lnk)
        #expect(
            try harness.call(.readlink, ReadLink3Args(symlink: harness.root()), as: ReadLink3Res.self).status == .inval)
    }

    @Test(arguments: [
        (MkNodData3.fifo(.none), FileType3.fifo), (.sock(.none), .sock),
        (.chr(DeviceData3(devAttributes: .none, spec: SpecData3(specdata1: 1, specdata2: 3))), .chr),
        (.blk(DeviceData3(devAttributes: .none, spec: SpecData3(specdata1: 7, specdata2: 0))), .blk),
    ])
    func mknodMakesSpecialFiles(what: MkNodData3, type: FileType3) throws {
        let harness = try NFS3Harness()
        let result = try harness.call(
            .mknod, MkNod3Args(where: DirOpArgs3(dir: harness.root(), name: Array("node".utf8)), what: what),
            as: MkNod3Res.self)
        let made = try #require(result.success, "mknod \(type) answered \(result.status)")
        #expect(made.objAttributes.attributes?.type == type)
        if case .chr(let device) = what {
            #expect(made.objAttributes.attributes?.rdev == device.spec)
        }
        #expect(made.dirWcc.isComplete)
    }

    @Test(arguments: [FileType3.reg.rawValue, FileType3.dir.rawValue, FileType3.lnk.rawValue, 0, 8, 1000])
    func mknodOfOtherTypesIsBadtype(type: UInt32) throws {
        let harness = try NFS3Harness()
        let result = try harness.call(
            .mknod,
            MkNod3Args(where: DirOpArgs3(dir: harness.root(), name: Array("node".utf8)), what: .otherType(type)),
            as: MkNod3Res.self)
        let (status, body) = try #require(result.failure, "mknod of type \(type) succeeded")
        #expect(status == .badtype)
        #expect(body.dirWcc.isComplete)
    }

    // MARK: Writing

    @Test(arguments: StableHow3.allCases)
    func writeHonoursStableHowAndReportsTheVerifier(stable: StableHow3) throws {
        let harness = try NFS3Harness()
        let created = try #require(harness.createFile("w").success, "create failed")
        let file = try #require(created.obj.handle)
        let args = Write3Args(file: file, offset: 0, stable: stable, data: ByteBuffer(string: "hello"))
        let written = try #require(try harness.call(.write, args, as: Write3Res.self).success, "write failed")
        #expect(written.count == 5)
        #expect(written.committed >= stable)
        #expect(written.verf == harness.service.writeVerifier)
        #expect(written.fileWcc.isComplete)
        #expect(written.fileWcc.before.attributes?.size == 0)
        #expect(written.fileWcc.after.attributes?.size == 5)
        let committed = try #require(
            try harness.call(.commit, Commit3Args(file: file, offset: 0, count: 0), as: Commit3Res.self).success)
        #expect(committed.verf == written.verf)
        #expect(committed.fileWcc.isComplete)
    }

    @Test func writeToALowerFileCopiesItUp() throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "0123456789"])
        let file = try harness.handle("f")
        let before = try harness.attributes(file)
        let args = Write3Args(file: file, offset: 2, stable: .fileSync, data: ByteBuffer(string: "ab"))
        #expect(try harness.call(.write, args, as: Write3Res.self).status == .ok)
        let read = try #require(
            try harness.call(.read, Read3Args(file: file, offset: 0, count: 20), as: Read3Res.self).success)
        #expect(read.data == ByteBuffer(string: "01ab456789"))
        #expect(try harness.attributes(file).fileid == before.fileid)
    }

    @Test func writeCountBeyondDataIsInval() throws {
        let harness = try NFS3Harness()
        let created = try #require(harness.createFile("w").success, "create failed")
        let file = try #require(created.obj.handle)
        let args = Write3Args(file: file, offset: 0, count: 10, stable: .unstable, data: ByteBuffer(string: "abc"))
        #expect(try harness.call(.write, args, as: Write3Res.self).status == .inval)
    }

    @Test func writeBeyondTheLargestFileIsFbigAndToADirectoryIsIsdir() throws {
        let harness = try NFS3Harness()
        let created = try #require(harness.createFile("w").success, "create failed")
        let file = try #require(created.obj.handle)
        let far = Write3Args(file: file, offset: UInt64.max - 1, stable: .unstable, data: ByteBuffer(string: "ab"))
        #expect(try harness.call(.write, far, as: Write3Res.self).status == .fbig)
        let dir = Write3Args(file: harness.root(), offset: 0, stable: .unstable, data: ByteBuffer(string: "ab"))
        #expect(try harness.call(.write, dir, as: Write3Res.self).status == .isdir)
    }

    @Test func setattrWithGuard() throws {
        let harness = try NFS3Harness()
        let created = try #require(harness.createFile("s").success, "create failed")
        let file = try #require(created.obj.handle)
        let ctime = try harness.attributes(file).ctime
        let wrong = NFSTime3(seconds: ctime.seconds &- 100, nseconds: ctime.nseconds)
        let refused = try harness.call(
            .setattr, SetAttr3Args(object: file, newAttributes: SetAttributes3(mode: 0o600), guardCtime: wrong),
            as: SetAttr3Res.self)
        let (status, body) = try #require(refused.failure, "guarded setattr with a wrong ctime succeeded")
        #expect(status == .notSync)
        #expect(body.objWcc.isComplete)
        #expect(try harness.attributes(file).mode == 0o644)
        let accepted = try harness.call(
            .setattr,
            SetAttr3Args(object: file, newAttributes: SetAttributes3(mode: 0o600, size: 3), guardCtime: ctime),
            as: SetAttr3Res.self)
        let done = try #require(accepted.success, "guarded setattr with the right ctime answered \(accepted.status)")
        #expect(done.objWcc.isComplete)
        #expect(done.objWcc.after.attributes?.mode == 0o600)
        #expect(done.objWcc.after.attributes?.size == 3)
        let times = try harness.call(
            .setattr,
            SetAttr3Args(
                object: file,
                newAttributes: SetAttributes3(
                    atime: .setToClientTime(NFSTime3(seconds: 1000, nseconds: 5)),
                    mtime: .setToClientTime(NFSTime3(seconds: 2000, nseconds: 7)))),
            as: SetAttr3Res.self)
        let timed = try #require(times.success, "setattr of times answered \(times.status)")
        #expect(timed.objWcc.after.attributes?.mtime == NFSTime3(seconds: 2000, nseconds: 7))
        #expect(timed.objWcc.after.attributes?.atime == NFSTime3(seconds: 1000, nseconds: 5))
    }

    // MARK: Removing, renaming, linking

    @Test func removeAndRmdirCarryWccAndRefuseDots() throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "x", "full/inner": "y"])
        let remove = { (name: String) throws -> Remove3Res in
            try harness.call(.remove, Remove3Args(object: DirOpArgs3(dir: harness.root(), name: Array(name.utf8))))
        }
        let rmdir = { (name: String) throws -> RmDir3Res in
            try harness.call(.rmdir, RmDir3Args(object: DirOpArgs3(dir: harness.root(), name: Array(name.utf8))))
        }
        let removed = try #require(remove("f").success, "remove failed")
        #expect(removed.dirWcc.isComplete)
        #expect(try harness.lookup("f").status == .noent)
        #expect(try remove("f").status == .noent)
        #expect(try remove(".").status == .acces)
        #expect(try remove("..").status == .acces)
        #expect(try rmdir(".").status == .acces)
        #expect(try rmdir("full").status == .notempty)
        #expect(try rmdir("missing").status == .noent)
        let full = try harness.handle("full")
        #expect(
            try harness.call(
                .remove, Remove3Args(object: DirOpArgs3(dir: full, name: Array("inner".utf8))), as: Remove3Res.self
            )
            .status == .ok)
        let gone = try #require(rmdir("full").success, "rmdir failed")
        #expect(gone.dirWcc.isComplete)
    }

    @Test func renameMovesAndCarriesBothWcc() throws {
        let harness = try NFS3Harness(lowerFiles: ["a": "x", "dir/keep": "k"])
        let dir = try harness.handle("dir")
        let result = try harness.rename("a", in: harness.root(), to: "b", in: dir)
        let renamed = try #require(result.success, "rename answered \(result.status)")
        #expect(renamed.fromdirWcc.isComplete)
        #expect(renamed.todirWcc.isComplete)
        #expect(try harness.lookup("a").status == .noent)
        #expect(try harness.lookup("b", in: dir).status == .ok)
        let dots = try harness.rename(".", in: harness.root(), to: "c", in: dir)
        #expect(dots.status == .perm)
    }

    @Test func renameAndLinkAcrossNamespacesAreXdev() throws {
        let harness = try NFS3Harness(lowerFiles: ["a": "x"], namespaceCount: 2)
        let result = try harness.rename("a", in: harness.root(0), to: "b", in: harness.root(1))
        #expect(result.status == .xdev)
        let file = try harness.handle("a")
        let link = try harness.call(
            .link, Link3Args(file: file, link: DirOpArgs3(dir: harness.root(1), name: Array("l".utf8))),
            as: Link3Res.self)
        #expect(link.status == .xdev)
    }

    @Test func linkMakesASecondName() throws {
        let harness = try NFS3Harness()
        let created = try #require(harness.createFile("orig").success, "create failed")
        let file = try #require(created.obj.handle)
        let result = try harness.call(
            .link, Link3Args(file: file, link: DirOpArgs3(dir: harness.root(), name: Array("second".utf8))),
            as: Link3Res.self)
        let linked = try #require(result.success, "link answered \(result.status)")
        #expect(linked.fileAttributes.attributes?.nlink == 2)
        #expect(linked.linkdirWcc.isComplete)
        let other = try harness.handle("second")
        #expect(try harness.attributes(other).fileid == created.objAttributes.attributes?.fileid)
        let again = try harness.call(
            .link, Link3Args(file: file, link: DirOpArgs3(dir: harness.root(), name: Array("second".utf8))),
            as: Link3Res.self)
        #expect(again.status == .exist)
        let dot = try harness.call(
            .link, Link3Args(file: file, link: DirOpArgs3(dir: harness.root(), name: Array("..".utf8))),
            as: Link3Res.self)
        #expect(dot.status == .exist)
    }

    // MARK: Read-only exports

    @Test func readOnlyExportAnswersRofsToEveryChange() throws {
        let harness = try NFS3Harness(lowerFiles: ["f": "x", "d/g": "y"])
        let file = try harness.handle("f")
        let root = harness.root()
        harness.isReadOnly = true
        let name = DirOpArgs3(dir: root, name: Array("new".utf8))
        let existing = DirOpArgs3(dir: root, name: Array("f".utf8))
        let calls: [(NFS3Procedure, NFSStatus3)] = [
            (
                .setattr,
                try harness.call(
                    .setattr, SetAttr3Args(object: file, newAttributes: SetAttributes3(mode: 0o600)),
                    as: SetAttr3Res.self
                ).status
            ),
            (
                .write,
                try harness.call(
                    .write, Write3Args(file: file, offset: 0, stable: .fileSync, data: ByteBuffer(string: "z")),
                    as: Write3Res.self
                ).status
            ),
            (
                .create,
                try harness.call(.create, Create3Args(where: name, how: .unchecked(.none)), as: Create3Res.self).status
            ),
            (.mkdir, try harness.call(.mkdir, MkDir3Args(where: name, attributes: .none), as: MkDir3Res.self).status),
            (
                .symlink,
                try harness.call(
                    .symlink,
                    Symlink3Args(where: name, symlink: SymlinkData3(symlinkAttributes: .none, symlinkData: [0x61])),
                    as: Symlink3Res.self
                ).status
            ),
            (.mknod, try harness.call(.mknod, MkNod3Args(where: name, what: .fifo(.none)), as: MkNod3Res.self).status),
            (.remove, try harness.call(.remove, Remove3Args(object: existing), as: Remove3Res.self).status),
            (
                .rmdir,
                try harness.call(
                    .rmdir, RmDir3Args(object: DirOpArgs3(dir: root, name: Array("d".utf8))), as: RmDir3Res.self
                ).status
            ),
            (.rename, try harness.call(.rename, Rename3Args(from: existing, to: name), as: Rename3Res.self).status),
            (.link, try harness.call(.link, Link3Args(file: file, link: name), as: Link3Res.self).status),
        ]
        for (procedure, status) in calls {
            #expect(status == .rofs, "\(procedure.name) answered \(status)")
        }
        let access = try #require(
            try harness.call(.access, Access3Args(object: root, access: 0x3F), as: Access3Res.self).success)
        #expect(Access3(rawValue: access.access).isDisjoint(with: [.modify, .extend, .delete]))
        #expect(Access3(rawValue: access.access).contains(.read))
        #expect(try harness.lookup("new").status == .noent)
    }
}
