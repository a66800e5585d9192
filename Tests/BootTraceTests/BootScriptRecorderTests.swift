import Foundation
import NFS3
import NIOCore
import Testing
import XDR

@testable import BootTrace

/// The converter rebuilds paths from the replies the client got, as a trace line holds them.
@Suite struct BootScriptRecorderTests {
    static func bytes(_ value: some XDREncodable) -> [UInt8] {
        var buffer = ByteBuffer()
        value.encode(xdr: &buffer)
        return buffer.readBytes(length: buffer.readableBytes)!
    }

    static func line(
        _ start: Int64, _ end: Int64, _ program: UInt32, _ procedure: UInt32, _ args: [UInt8], _ reply: [UInt8],
        peer: String = "10.0.2.15:700"
    ) -> String {
        func b64(_ b: [UInt8]) -> String { b.isEmpty ? "-" : Data(b).base64EncodedString() }
        let version = program == Mount.program ? Mount.version3 : NFS3.version
        return "\(start) \(end) \(peer) \(program) \(version) \(procedure) 1 ok \(b64(args)) \(b64(reply))"
    }

    static let root = FileHandle3([1])
    static let etc = FileHandle3([2])
    static let passwd = FileHandle3([3])
    static let none = PostOpAttr(nil)

    static var trace: String {
        let nfs = NFS3.program
        var lines = ["# strata call trace 1 opened now"]
        lines.append(
            line(
                100, 200, Mount.program, 1, bytes(DirPath("/diskless")),
                bytes(MountRes3.ok(MountRes3OK(fhandle: root, authFlavors: [1])))))
        lines.append(
            line(
                300, 350, nfs, 3, bytes(Lookup3Args(what: DirOpArgs3(dir: root, name: Array("etc".utf8)))),
                bytes(Lookup3Res.ok(Lookup3ResOK(object: etc, objAttributes: none, dirAttributes: none)))))
        lines.append(
            line(
                400, 500, nfs, 17,
                bytes(
                    ReadDirPlus3Args(
                        dir: etc, cookie: 0, cookieverf: CookieVerifier3(rawValue: 0), dircount: 512, maxcount: 4096)),
                bytes(
                    ReadDirPlus3Res.ok(
                        ReadDirPlus3ResOK(
                            dirAttributes: none, cookieverf: CookieVerifier3(rawValue: 9),
                            entries: [
                                EntryPlus3(
                                    fileid: 3, name: Array("pass wd".utf8), cookie: 1, nameAttributes: none,
                                    nameHandle: PostOpFileHandle3(passwd))
                            ], eof: true)))))
        // Two READs that overlapped, written out of order; a GETATTR on a handle never given.
        lines.append(line(610, 700, nfs, 6, bytes(Read3Args(file: passwd, offset: 4096, count: 4096)), [0, 0, 0, 0]))
        lines.append(line(600, 800, nfs, 6, bytes(Read3Args(file: passwd, offset: 0, count: 4096)), [0, 0, 0, 0]))
        lines.append(line(900, 950, nfs, 1, bytes(GetAttr3Args(object: FileHandle3([77]))), [0, 0, 0, 0]))
        lines.append(
            line(
                1000, 1100, nfs, 3, bytes(Lookup3Args(what: DirOpArgs3(dir: etc, name: Array("motd".utf8)))),
                bytes(Lookup3Res.fail(.noent, Lookup3ResFail(dirAttributes: none)))))
        return lines.joined(separator: "\n") + "\n"
    }

    @Test func convertsATraceIntoAPathScript() throws {
        let calls = try BootScriptRecorder.parseTrace(Self.trace, source: "t")
        let report = try BootScriptRecorder.script(from: calls, notes: ["test"])
        let text = report.script.text
        #expect(
            text == """
                # strata boot script 1
                # test
                0.000 - MNT = OK
                0.200 - LOOKUP / etc = OK
                0.300 - READDIRPLUS /etc 0 512 4096 = OK
                0.500 - READ /etc/pass%20wd 0 4096 = OK
                0.510 1 READ /etc/pass%20wd 4096 4096 = OK
                0.900 - LOOKUP /etc motd = NOENT

                """)
        #expect(report.skipped == ["on a handle no earlier reply gave": 1])
        // What it writes parses back.
        _ = try BootScript.parse(text)
    }

    @Test func severalClientsNeedAChoice() throws {
        let other = Self.line(5, 6, NFS3.program, 0, [], [], peer: "10.0.2.16:800")
        let calls = try BootScriptRecorder.parseTrace(Self.trace + other + "\n", source: "t")
        #expect(throws: BootScriptRecorder.TraceError.self) { try BootScriptRecorder.script(from: calls) }
        #expect(try BootScriptRecorder.script(from: calls, client: "10.0.2.15").script.calls.count == 6)
    }

    @Test func malformedTraceLineIsNamed() {
        #expect {
            _ = try BootScriptRecorder.parseTrace(
                "# header\n1 2 x:1 100003 3 1 5 ok - -\nbroken line\n", source: "trace.log")
        } throws: { error in
            "\(error)".contains("trace.log:3:")
        }
    }
}
