import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct PermissionTests {
    @Test func nonRootCannotWriteRootOwnedDirectory() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/sys", mode: 0o755)
        f.file(f.lower(0) + "/sys/conf", "c", mode: 0o644)
        let u = try f.open()
        #expect(throws: UnionError.accessDenied) { try u.mkfile("sys", "x", as: alice) }
        #expect(throws: UnionError.accessDenied) { try u.remove(in: u.h("sys"), b("conf"), as: alice) }
        #expect(throws: UnionError.accessDenied) { try u.put("sys/conf", "x", as: alice) }
        #expect(throws: UnionError.notPermitted) {
            try u.setattr(u.h("sys/conf"), .init(mode: 0o777), guardCtime: nil, as: alice)
        }
        #expect(throws: UnionError.notPermitted) {
            try u.setattr(u.h("sys/conf"), .init(uid: 1000), guardCtime: nil, as: alice)
        }
        #expect(try u.contents("sys/conf") == "c")
        #expect(!f.exists(f.upper + "/tree/sys"))  // nothing copied up for denied calls
        let acc = try u.access(u.h("sys"), .all, as: alice)
        #expect(acc == [.read, .lookup])
        #expect(try u.access(u.h("sys/conf"), .all, as: root) == [.read, .modify, .extend])
    }

    @Test func searchPermissionNeededToLookup() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/private/secret", "s")
        chmod(f.lower(0) + "/private", 0o700)
        let u = try f.open()
        #expect(throws: UnionError.accessDenied) { try u.walk("private/secret", as: alice) }
        #expect(throws: UnionError.accessDenied) { try u.readdir(u.h("private"), after: 0, as: alice) }
        #expect(try u.walk("private/secret", as: root).1.size == 1)
    }

    @Test func createdObjectsBelongToCaller() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/home", mode: 0o777)
        f.mkdir(f.lower(0) + "/shared", mode: 0o2777)
        chown(f.lower(0) + "/shared", 0, 500)
        chmod(f.lower(0) + "/shared", 0o2777)
        let u = try f.open()
        let (_, a) = try u.create(in: u.h("home"), b("mine"), mode: .guarded, attributes: .init(mode: 0o600), as: alice)
        #expect(a.uid == 1000 && a.gid == 1000 && a.mode == 0o600)
        let (_, d) = try u.mkdir(in: u.h("home"), b("dir"), attributes: .init(), as: alice)
        #expect(d.uid == 1000 && d.mode == 0o755)
        let (_, s) = try u.create(in: u.h("shared"), b("g"), mode: .guarded, attributes: .init(), as: alice)
        #expect(s.gid == 500 && s.mode == 0o644)
        let (_, sd) = try u.mkdir(in: u.h("shared"), b("sub"), attributes: .init(mode: 0o750), as: alice)
        #expect(sd.gid == 500 && sd.mode == 0o2750)
        #expect(throws: UnionError.notPermitted) {
            try u.mknod(
                in: u.h("home"), b("dev"), type: .characterDevice, rdev: .init(major: 1, minor: 3), attributes: .init(),
                as: alice)
        }
        let (_, fifo) = try u.mknod(
            in: u.h("home"), b("fifo"), type: .fifo, rdev: .init(major: 0, minor: 0), attributes: .init(), as: alice)
        #expect(fifo.type == .fifo && fifo.uid == 1000)
        let (_, dev) = try u.mknod(
            in: u.h("home"), b("null"), type: .characterDevice, rdev: .init(major: 1, minor: 3), attributes: .init(),
            as: root)
        #expect(dev.rdev == DeviceNumber(major: 1, minor: 3))
    }

    @Test func stickyDirectoryProtectsOthersEntries() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/tmp", mode: 0o1777)
        f.file(f.lower(0) + "/tmp/alices", "a", mode: 0o666, uid: 1000, gid: 1000)
        let u = try f.open()
        #expect(throws: UnionError.accessDenied) { try u.remove(in: u.h("tmp"), b("alices"), as: bob) }
        #expect(throws: UnionError.accessDenied) {
            try u.rename(from: u.h("tmp"), b("alices"), to: u.h("tmp"), b("bobs"), as: bob)
        }
        try u.mkfile("tmp", "bobs", "b", as: bob)
        try u.remove(in: u.h("tmp"), b("bobs"), as: bob)
        try u.remove(in: u.h("tmp"), b("alices"), as: alice)
    }

    @Test func groupAccess() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/team", "t", mode: 0o660, uid: 0, gid: 100)
        f.file(f.lower(0) + "/other", "o", mode: 0o660, uid: 0, gid: 200)
        let u = try f.open()
        try u.put("team", "T", as: bob)  // bob is in group 100
        #expect(try u.contents("team") == "T")
        #expect(throws: UnionError.accessDenied) { try u.put("other", "x", as: bob) }
        #expect(throws: UnionError.accessDenied) { try u.read(u.h("other"), offset: 0, count: 1, as: bob) }
        #expect(try u.access(u.h("team"), [.read, .modify], as: bob) == [.read, .modify])
    }

    @Test func ownerRulesForSetattr() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/home", mode: 0o777)
        f.file(f.lower(0) + "/home/file", "data", mode: 0o4755, uid: 1001, gid: 1001)
        let u = try f.open()
        let h = try u.h("home/file")
        // The owner may chgrp to a group it is in, not to another.
        _ = try u.setattr(h, .init(gid: 100), guardCtime: nil, as: bob)
        #expect(throws: UnionError.notPermitted) { try u.setattr(h, .init(gid: 5), guardCtime: nil, as: bob) }
        #expect(throws: UnionError.notPermitted) { try u.setattr(h, .init(uid: 1000), guardCtime: nil, as: bob) }
        // chown cleared set-user-id; put it back and check a write by non-root clears it.
        _ = try u.setattr(h, .init(mode: 0o4755), guardCtime: nil, as: bob)
        #expect(try u.getattr(h).mode == 0o4755)
        try u.put("home/file", "D", as: bob)
        #expect(try u.getattr(h).mode == 0o755)
        // Explicit times: owner only; "now": anyone with write permission.
        #expect(throws: UnionError.notPermitted) {
            try u.setattr(h, .init(mtime: .clientTime(.init(seconds: 5, nanoseconds: 0))), guardCtime: nil, as: alice)
        }
        let a = try u.setattr(h, .init(mtime: .clientTime(.init(seconds: 5, nanoseconds: 0))), guardCtime: nil, as: bob)
        #expect(a.mtime.seconds == 5)
        // Size needs write permission.
        #expect(throws: UnionError.accessDenied) { try u.setattr(h, .init(size: 0), guardCtime: nil, as: alice) }
        #expect(try u.setattr(h, .init(size: 2), guardCtime: nil, as: bob).size == 2)
        // The ctime guard.
        #expect(throws: UnionError.guardMismatch) {
            try u.setattr(h, .init(size: 1), guardCtime: .init(seconds: 1, nanoseconds: 0), as: bob)
        }
        let ctime = try u.getattr(h).ctime
        #expect(try u.setattr(h, .init(size: 1), guardCtime: ctime, as: bob).size == 1)
        // Root chowns.
        #expect(try u.setattr(h, .init(uid: 1000, gid: 1000), guardCtime: nil, as: root).uid == 1000)
    }

    @Test func exclusiveCreateIsIdempotentForSameVerifier() throws {
        let f = Fixture()
        f.mkdir(f.lower(0), mode: 0o1777)
        let u = try f.open()
        #expect(try u.getattr(u.rootHandle).mode == 0o1777)
        let (h1, _) = try u.create(
            in: u.rootHandle, b("x"), mode: .exclusive(verifier: 42), attributes: .init(), as: alice)
        let (h2, _) = try u.create(
            in: u.rootHandle, b("x"), mode: .exclusive(verifier: 42), attributes: .init(), as: alice)
        #expect(h1 == h2)
        #expect(throws: UnionError.exists) {
            try u.create(in: u.rootHandle, b("x"), mode: .exclusive(verifier: 7), attributes: .init(), as: alice)
        }
        #expect(throws: UnionError.exists) {
            try u.create(in: u.rootHandle, b("x"), mode: .guarded, attributes: .init(), as: alice)
        }
        try u.put("x", "content")
        let (h3, a3) = try u.create(in: u.rootHandle, b("x"), mode: .unchecked, attributes: .init(size: 0), as: root)
        #expect(h3 == h1 && a3.size == 0)
    }

    @Test func hardLinkingOthersFilesIsProtected() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/pub", mode: 0o777)
        f.file(f.lower(0) + "/pub/bobs-secret", "s", mode: 0o600, uid: 1001, gid: 1001)
        f.file(f.lower(0) + "/pub/shared", "s", mode: 0o666, uid: 1001, gid: 1001)
        f.file(f.lower(0) + "/pub/setuid", "s", mode: 0o4777, uid: 1001, gid: 1001)
        let u = try f.open()
        let pub = try u.h("pub")
        #expect(throws: UnionError.notPermitted) { try u.link(u.h("pub/bobs-secret"), in: pub, b("l1"), as: alice) }
        #expect(throws: UnionError.notPermitted) { try u.link(u.h("pub/setuid"), in: pub, b("l2"), as: alice) }
        #expect(try u.link(u.h("pub/shared"), in: pub, b("l3"), as: alice).nlink == 2)
        #expect(try u.link(u.h("pub/bobs-secret"), in: pub, b("l4"), as: bob).nlink == 2)
        #expect(try u.link(u.h("pub/bobs-secret"), in: pub, b("l5"), as: root).nlink == 3)
        #expect(throws: UnionError.notPermitted) { try u.link(pub, in: pub, b("l6"), as: root) }
    }

    @Test func movingADirectoryAcrossParentsNeedsWriteOnIt() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/a", mode: 0o777)
        f.mkdir(f.lower(0) + "/b", mode: 0o777)
        f.mkdir(f.lower(0) + "/a/rootdir", mode: 0o755)
        let u = try f.open()
        #expect(throws: UnionError.accessDenied) {
            try u.rename(from: u.h("a"), b("rootdir"), to: u.h("b"), b("moved"), as: alice)
        }
        try u.rename(from: u.h("a"), b("rootdir"), to: u.h("a"), b("renamed"), as: alice)  // same parent: fine
        #expect(try u.names("a") == ["renamed"])
    }

    @Test func searchPermissionNeededToChangeADirectory() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/wonly", mode: 0o777)
        f.file(f.lower(0) + "/wonly/x", "x")
        chmod(f.lower(0) + "/wonly", 0o666)
        let u = try f.open()
        let d = try u.h("wonly")
        #expect(throws: UnionError.accessDenied) { try u.remove(in: d, b("x"), as: alice) }
        #expect(throws: UnionError.accessDenied) {
            try u.create(in: d, b("y"), mode: .guarded, attributes: .init(), as: alice)
        }
    }

    @Test func ownerKeepsAccessThroughNFSOverride() throws {
        let f = Fixture()
        f.mkdir(f.lower(0), mode: 0o777)
        let u = try f.open()
        let (h, _) = try u.create(in: u.rootHandle, b("ro"), mode: .guarded, attributes: .init(mode: 0o444), as: alice)
        // cp/tar create 0444 files then write them: the owner may (knfsd owner override); ACCESS still says no.
        _ = try [UInt8](b("data")).withUnsafeBytes { try u.write(h, offset: 0, data: $0, stable: .fileSync, as: alice) }
        #expect(try u.access(h, [.read, .modify], as: alice) == [.read])
        #expect(throws: UnionError.accessDenied) {
            try [UInt8](b("x")).withUnsafeBytes { try u.write(h, offset: 0, data: $0, stable: .fileSync, as: bob) }
        }
        // Set-group-id is dropped when the owner is not in the file's group.
        _ = try u.setattr(h, .init(gid: 1000), guardCtime: nil, as: root)
        let a = try u.setattr(h, .init(mode: 0o2755), guardCtime: nil, as: Credentials(uid: 1000, gid: 5, groups: []))
        #expect(a.mode == 0o755)
    }

    @Test func touchNeedsOwnershipOrWritePermission() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/groupw", "g", mode: 0o664, uid: 0, gid: 100)
        f.file(f.lower(0) + "/readonly", "r", mode: 0o644, uid: 0, gid: 100)
        let u = try f.open()
        // "now" needs write permission (bob is in group 100); explicit times need ownership.
        _ = try u.setattr(u.h("groupw"), .init(atime: .serverTime, mtime: .serverTime), guardCtime: nil, as: bob)
        #expect(throws: UnionError.notPermitted) {
            try u.setattr(
                u.h("groupw"), .init(mtime: .clientTime(.init(seconds: 1, nanoseconds: 0))), guardCtime: nil, as: bob)
        }
        #expect(throws: UnionError.accessDenied) {
            try u.setattr(u.h("readonly"), .init(mtime: .serverTime), guardCtime: nil, as: bob)
        }
    }
}
