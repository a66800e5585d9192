import Foundation
import Glibc
import TestSupport
import Testing

@testable import Union

/// SETATTR permission rules compared with the kernel's own answers: the same chown, chmod and
/// utimes calls are made on a local file as another user (`setpriv` + `perl`, whose exit status is the errno) and
/// through the union as the same credentials; errno and the resulting owner and mode must match.
@Suite struct KernelPermissionTests {
    enum Op: CustomStringConvertible {
        case chown(Int64, Int64)  // -1: unchanged
        case chmod(UInt32)
        case touchNow
        case touchExplicit

        var description: String {
            switch self {
            case .chown(let u, let g): return "chown(\(u), \(g))"
            case .chmod(let m): return "chmod(0\(String(m, radix: 8)))"
            case .touchNow: return "utimes(NULL)"
            case .touchExplicit: return "utimes(times)"
            }
        }

        var perlArguments: [String] {
            switch self {
            case .chown(let u, let g): return ["chown", "\(u)", "\(g)"]
            case .chmod(let m): return ["chmod", String(m, radix: 8)]
            case .touchNow: return ["now"]
            case .touchExplicit: return ["times"]
            }
        }

        var changes: SetAttributes {
            switch self {
            case .chown(let u, let g):
                return SetAttributes(uid: u < 0 ? nil : UInt32(u), gid: g < 0 ? nil : UInt32(g))
            case .chmod(let m): return SetAttributes(mode: m)
            case .touchNow: return SetAttributes(atime: .serverTime, mtime: .serverTime)
            case .touchExplicit:
                return SetAttributes(
                    atime: .clientTime(Timespec(seconds: 1_000_000, nanoseconds: 0)),
                    mtime: .clientTime(Timespec(seconds: 2_000_000, nanoseconds: 0)))
            }
        }
    }

    static let script = """
        my ($op, $path, @a) = @ARGV; my $ok;
        if ($op eq "chown") { $ok = chown($a[0], $a[1], $path) }
        elsif ($op eq "chmod") { $ok = chmod(oct($a[0]), $path) }
        elsif ($op eq "now") { $ok = utime(undef, undef, $path) }
        elsif ($op eq "times") { $ok = utime(1000000, 2000000, $path) }
        elsif ($op eq "mkdir") { umask 0; $ok = mkdir($path, oct($a[0])) }
        elsif ($op eq "create") { umask 0; $ok = sysopen(my $fh, $path, 0301, oct($a[0])) }  # 0301: O_CREAT|O_EXCL|O_WRONLY
        exit($ok ? 0 : $! + 0);
        """

    /// Runs each call (perl arguments: operation, path, operands) as its credentials with the kernel's rules, in
    /// order, from one shell (one child process, however many calls); returns each call's errno (0: success).
    static func kernel(_ calls: [(arguments: [String], cred: Credentials)], in dir: String) throws -> [Int32] {
        func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let scriptPath = dir + "/ops.pl", results = dir + "/results"
        try Self.script.write(toFile: scriptPath, atomically: false, encoding: .utf8)
        var lines = ["exec >" + quoted(results)]
        for c in calls {
            var command = ["perl", quoted(scriptPath)] + c.arguments.map(quoted)
            if !c.cred.isRoot {
                let groups =
                    c.cred.groups.isEmpty
                    ? "--clear-groups" : "--groups=" + c.cred.groups.map { "\($0)" }.joined(separator: ",")
                command = ["setpriv", "--reuid=\(c.cred.uid)", "--regid=\(c.cred.gid)", groups] + command
            }
            lines.append(command.joined(separator: " ") + " </dev/null 2>/dev/null; echo $?")
        }
        try lines.joined(separator: "\n").write(toFile: dir + "/ops.sh", atomically: false, encoding: .utf8)
        let shell = try Subprocess(["/bin/sh", dir + "/ops.sh"])
        if shell.wait(timeout: 120) == nil {
            shell.terminate()
            Issue.record("\(calls.count) calls as other users did not finish within 120 s")
        }
        let out = (try? String(contentsOfFile: results, encoding: .utf8)) ?? ""
        let codes = out.split(separator: "\n").map { Int32($0) ?? -1 }
        guard codes.count == calls.count else {
            Issue.record("\(codes.count) results for \(calls.count) calls: \(out.prefix(200))")
            return Array(repeating: -1, count: calls.count)
        }
        return codes
    }

    static func errno(_ e: UnionError?) -> Int32 {
        switch e {
        case nil: return 0
        case .notPermitted: return EPERM
        case .accessDenied: return EACCES
        default: return -1
        }
    }

    static func canRunAsOthers() -> Bool {
        guard access("/usr/bin/setpriv", X_OK) == 0, access("/usr/bin/perl", X_OK) == 0, getuid() == 0 else {
            Issue.record("needs root, setpriv (util-linux) and perl (see scripts/deps.sh)")
            return false
        }
        return true
    }

    @Test func setattrAnswersAsTheKernel() throws {
        var st = stat()
        guard Self.canRunAsOthers() else { return }
        let f = Fixture()
        chmod(f.base, 0o755)  // the other users must reach the kernel's files
        let kernelDir = f.base + "/kernel"
        f.mkdir(kernelDir, mode: 0o755)
        let owner: (uid: UInt32, gid: UInt32) = (65534, 65534)
        let callers: [(String, Credentials)] = [
            ("owner", Credentials(uid: 65534, gid: 65534, groups: [65534])),
            ("owner in 65533", Credentials(uid: 65534, gid: 65534, groups: [65534, 65533])),
            ("owner outside the file's group", Credentials(uid: 65534, gid: 65532, groups: [65532])),
            ("group member", Credentials(uid: 65533, gid: 65534, groups: [65534])),
            ("stranger", Credentials(uid: 65533, gid: 65533, groups: [65533])),
            ("root", .root),
        ]
        let modes: [UInt32] = [0o644, 0o666, 0o6755, 0o2644]
        let ops: [Op] = [
            .chown(65534, 65534), .chown(65534, -1), .chown(-1, 65534), .chown(65533, -1), .chown(-1, 65533),
            .chown(-1, 65532), .chown(0, 0), .chmod(0o2755), .chmod(0o644), .chmod(0o4711), .touchNow, .touchExplicit,
        ]
        var cases: [(name: String, who: String, cred: Credentials, mode: UInt32, op: Op)] = []
        for (who, cred) in callers {
            for mode in modes {
                for op in ops { cases.append(("f\(cases.count)", who, cred, mode, op)) }
            }
        }
        for c in cases {
            f.file(f.lower(0) + "/" + c.name, "x", mode: mode_t(c.mode), uid: owner.uid, gid: owner.gid)
            f.file(kernelDir + "/" + c.name, "x", mode: mode_t(c.mode), uid: owner.uid, gid: owner.gid)
        }
        let u = try f.open()
        defer { u.close() }
        var mismatches: [String] = []
        var kernelErrors: [Int32: Int] = [:]
        let errnos = try Self.kernel(
            cases.map { c in
                let a = c.op.perlArguments
                return ([a[0], kernelDir + "/" + c.name] + a.dropFirst(), c.cred)
            }, in: f.base)
        for (c, kernelErrno) in zip(cases, errnos) {
            let path = kernelDir + "/" + c.name
            kernelErrors[kernelErrno, default: 0] += 1
            #expect(stat(path, &st) == 0)
            let kernelResult = (st.st_uid, st.st_gid, UInt32(st.st_mode) & 0o7777)
            var unionError: UnionError?
            do {
                _ = try u.setattr(u.h(c.name), c.op.changes, guardCtime: nil, as: c.cred)
            } catch {
                unionError = error
            }
            let a = try u.getattr(u.h(c.name))
            let unionResult = (a.uid, a.gid, a.mode)
            if Self.errno(unionError) != kernelErrno || kernelResult != unionResult {
                mismatches.append(
                    "\(c.op) by \(c.who) on 0\(String(c.mode, radix: 8)): kernel errno \(kernelErrno) → "
                        + "\(kernelResult.0):\(kernelResult.1) 0\(String(kernelResult.2, radix: 8)); union "
                        + "\(unionError.map { "\($0)" } ?? "ok") → \(a.uid):\(a.gid) 0\(String(a.mode, radix: 8))")
            }
        }
        #expect(
            mismatches.isEmpty,
            Comment(rawValue: "\(mismatches.count) of \(cases.count):\n" + mismatches.joined(separator: "\n")))
        // Not vacuous: the kernel allowed some, and refused some with each errno.
        #expect(kernelErrors[0, default: 0] > 0 && kernelErrors[EPERM, default: 0] > 0)
        #expect(
            kernelErrors[EACCES, default: 0] > 0 && kernelErrors.keys.allSatisfy { [0, EPERM, EACCES].contains($0) })
    }

    /// MKDIR and CREATE modes (set-gid, set-uid, sticky) and groups in set-gid and plain parents, as the kernel's
    /// `vfs_prepare_mode`/`inode_init_owner` make them.
    @Test func newObjectModesAsTheKernel() throws {
        var st = stat()
        guard Self.canRunAsOthers() else { return }
        let f = Fixture()
        chmod(f.base, 0o755)
        let kernelDir = f.base + "/kernel"
        f.mkdir(kernelDir, mode: 0o755)
        for parent in [kernelDir, f.lower(0)] {
            f.mkdir(parent + "/plain", mode: 0o777)
            f.mkdir(parent + "/sgid", mode: 0o2777)
            chown(parent + "/sgid", 0, 500)
            chmod(parent + "/sgid", 0o2777)
        }
        let callers: [(String, Credentials)] = [
            ("member of 500", Credentials(uid: 65533, gid: 65533, groups: [65533, 500])),
            ("not a member", Credentials(uid: 65533, gid: 65533, groups: [65533])),
            ("root", .root),
        ]
        let u = try f.open()
        defer { u.close() }
        var mismatches: [String] = []
        var cases: [(who: String, cred: Credentials, dir: String, kind: String, mode: Int, name: String)] = []
        for (who, cred) in callers {
            for dir in ["plain", "sgid"] {
                for (kind, modes) in [
                    ("mkdir", [0o2775, 0o4755, 0o1777, 0o755, 0o6777]),
                    ("create", [0o2755, 0o2745, 0o4755, 0o6711, 0o644]),
                ] {
                    for mode in modes { cases.append((who, cred, dir, kind, mode, "o\(cases.count)")) }
                }
            }
        }
        let n = cases.count
        let errnos = try Self.kernel(
            cases.map { c in ([c.kind, kernelDir + "/" + c.dir + "/" + c.name, String(c.mode, radix: 8)], c.cred) },
            in: f.base)
        for (c, e) in zip(cases, errnos) {
            let path = kernelDir + "/" + c.dir + "/" + c.name
            #expect(e == 0 && stat(path, &st) == 0, "\(c.kind) \(path) as \(c.who): errno \(e)")
            let attrs = SetAttributes(mode: UInt32(c.mode))
            let a =
                c.kind == "mkdir"
                ? try u.mkdir(in: u.h(c.dir), b(c.name), attributes: attrs, as: c.cred).1
                : try u.create(in: u.h(c.dir), b(c.name), mode: .guarded, attributes: attrs, as: c.cred).1
            let kernel = (st.st_uid, st.st_gid, UInt32(st.st_mode) & 0o7777)
            if kernel != (a.uid, a.gid, a.mode) {
                mismatches.append(
                    "\(c.kind) 0\(String(c.mode, radix: 8)) in \(c.dir) by \(c.who): kernel \(kernel.0):\(kernel.1) "
                        + "0\(String(kernel.2, radix: 8)), union \(a.uid):\(a.gid) 0\(String(a.mode, radix: 8))")
            }
        }
        #expect(
            mismatches.isEmpty, Comment(rawValue: "\(mismatches.count) of \(n):\n" + mismatches.joined(separator: "\n"))
        )
    }

    /// MKNOD with a device number Linux cannot hold is an invalid argument (NFS3ERR_INVAL), not an I/O error.
    @Test func deviceNumbersOutOfRangeAreInvalid() throws {
        let f = Fixture()
        let u = try f.open()
        defer { u.close() }
        for (major, minor): (UInt32, UInt32) in [(.max, .max), (4096, 0), (0, 1 << 20)] {
            do {
                _ = try u.mknod(
                    in: u.rootHandle, b("dev\(major)-\(minor)"), type: .characterDevice,
                    rdev: .init(major: major, minor: minor), attributes: .init(), as: root)
                Issue.record("mknod \(major):\(minor) succeeded")
            } catch {
                guard case .invalid = error else {
                    Issue.record("mknod \(major):\(minor): \(error), expected .invalid")
                    continue
                }
            }
        }
        let (_, a) = try u.mknod(
            in: u.rootHandle, b("largest"), type: .characterDevice, rdev: .init(major: 4095, minor: (1 << 20) - 1),
            attributes: .init(), as: root)
        #expect(a.rdev == DeviceNumber(major: 4095, minor: (1 << 20) - 1))
    }
}
