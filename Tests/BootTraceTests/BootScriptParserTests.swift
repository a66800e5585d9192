import Testing

@testable import BootTrace

@Suite struct BootScriptParserTests {
    static let valid = """
        # strata boot script 1
        # recorded by a test
        0.000 - MNT = OK
        0.400 - FSINFO / = OK
        1.000 - LOOKUP / etc = OK
        1.200 - LOOKUP /etc missing%20name = NOENT
        1.300 - READDIRPLUS /etc 0 4096 32768 = OK
        1.400 - READDIRPLUS /etc + 4096 32768 = OK
        2.000 - READ /etc/passwd 0 4096 = OK
        2.001 1 READ /etc/passwd 4096 4096 = OK
        2.002 1,2 GETATTR /etc/group = OK
        3.000 - CREATE /etc hostname guarded mode=644,uid=0,gid=0 = OK
        3.100 - WRITE /etc/hostname 0 8 filesync = OK
        3.200 - SETATTR /etc/hostname mode=600,mtime=server = OK
        3.300 - MKDIR / run mode=755 = OK
        3.400 - SYMLINK /run lock ../tmp - = OK
        3.500 - RENAME /etc hostname /run hostname = OK
        3.600 - READ /run/hostname 0 8 = OK
        3.700 - REMOVE /run hostname = OK
        3.800 - COMMIT /etc/group 0 0 = OK
        3.900 - UMNT = OK

        """

    @Test func validScriptParsesAndRoundTrips() throws {
        let script = try BootScript.parse(Self.valid, source: "t")
        #expect(script.calls.count == 19)
        #expect(script.notes == ["recorded by a test"])
        #expect(script.calls[3].operation == .lookup(dir: "/etc", name: "missing%20name"))
        #expect(script.calls[3].expectedStatus == 2)
        #expect(script.calls[7].overlapping == [6])
        #expect(script.calls[8].overlapping == [7, 6])
        #expect(script.calls[5].operation == .readdirplus("/etc", continued: true, dircount: 4096, maxcount: 32768))
        #expect(
            script.calls[9].operation
                == .create(dir: "/etc", name: "hostname", mode: .guarded, BootAttributes(mode: 0o644, uid: 0, gid: 0)))
        #expect(script.calls[11].operation == .setattr("/etc/hostname", BootAttributes(mode: 0o600, mtime: .server)))
        // Written back and parsed again: the same script.
        let again = try BootScript.parse(script.text, source: "t2")
        #expect(again.calls.map(\.operation) == script.calls.map(\.operation))
        #expect(again.calls.map(\.overlapping) == script.calls.map(\.overlapping))
        #expect(again.calls.map(\.expectedStatus) == script.calls.map(\.expectedStatus))
    }

    @Test func namesSurviveByteForByte() throws {
        let name: [UInt8] = [0x20, 0x25, 0x3D, 0x2C, 0xFF, 0x61, 0x0A]
        let encoded = BootPath.encode(name)
        #expect(!encoded.contains(" ") && !encoded.contains(","))
        #expect(BootPath.decode(encoded) == name)
        #expect(BootPath.join("/", "a") == "/a")
        #expect(BootPath.join("/a/b", "..") == "/a")
        #expect(BootPath.join("/a", ".") == "/a")
        #expect(BootPath.parent("/a") == "/")
    }

    /// Each malformed script is refused as a whole, with the number of the bad line and what
    /// is wrong with it.
    @Test(arguments: [
        ("0.000 - MNT = OK\n", 1, "first line must be"),
        ("# strata boot script 1\n", 1, "no calls"),
        ("# strata boot script 1\n0.000 - MNT = OK\nnonsense\n", 3, "expected 'MS OVERLAP OP"),
        ("# strata boot script 1\n0.000 - MNT = OK\nx - GETATTR / = OK\n", 3, "not a number of milliseconds"),
        ("# strata boot script 1\n5.000 - MNT = OK\n1.000 - GETATTR / = OK\n", 3, "before the previous line"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 2 GETATTR / = OK\n", 3, "reaches before the first call"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 0 GETATTR / = OK\n", 3, "OVERLAP '0'"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - FROB / = OK\n", 3, "unknown operation 'FROB'"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - GETATTR = OK\n", 3, "GETATTR takes 1 argument"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - GETATTR etc = OK\n", 3, "not a path from the export root"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - GETATTR /a/../b = OK\n", 3, "'..' component"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - LOOKUP / a%G1 = OK\n", 3, "is not a file name"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - READ / -1 10 = OK\n", 3, "offset '-1'"),
        (
            "# strata boot script 1\n0.000 - MNT = OK\n1.000 - WRITE / 0 10 sometimes = OK\n", 3,
            "unstable, datasync or filesync"
        ),
        (
            "# strata boot script 1\n0.000 - MNT = OK\n1.000 - CREATE / f guarded mode=999 = OK\n", 3,
            "attributes 'mode=999'"
        ),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - READDIRPLUS / 7 10 10 = OK\n", 3, "cookie '7'"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - GETATTR / = MAYBE\n", 3, "unknown status 'MAYBE'"),
        ("# strata boot script 1\n0.000 - GETATTR / = OK\n", 2, "before any MNT"),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - GETATTR /etc/passwd = OK\n", 3, "no earlier line looks up"),
        (
            "# strata boot script 1\n0.000 - MNT = OK\n1.000 - LOOKUP / etc = NOENT\n2.000 - GETATTR /etc = OK\n", 4,
            "no earlier line looks up"
        ),
        ("# strata boot script 1\n0.000 - MNT = OK\n1.000 - REMOVE / .. = OK\n", 3, "cannot be created or removed"),
    ])
    func malformedScriptIsRefusedNamingTheLine(text: String, line: Int, message: String) {
        #expect {
            _ = try BootScript.parse(text, source: "bad.script")
        } throws: { error in
            guard let error = error as? BootScriptError else { return false }
            return error.line == line && error.message.contains(message)
                && error.description.hasPrefix("bad.script:\(line): ")
        }
    }
}

@Suite struct BootScriptReadOnlyPartTests {
    @Test func keepsReadsOfTheImageOnly() throws {
        let script = try BootScript.parse(BootScriptParserTests.valid)
        let part = script.readOnlyPart()
        let keywords = part.calls.map { "\($0.operation.keyword) \($0.operation.arguments.joined(separator: " "))" }
        #expect(
            keywords == [
                "MNT ", "FSINFO /", "LOOKUP / etc", "LOOKUP /etc missing%20name", "READDIRPLUS /etc 0 4096 32768",
                "READDIRPLUS /etc + 4096 32768", "READ /etc/passwd 0 4096", "READ /etc/passwd 4096 4096",
                "GETATTR /etc/group", "UMNT ",
            ])
        // Overlaps follow the calls that remain.
        #expect(part.calls[7].overlapping == [6])
        #expect(part.calls[8].overlapping == [7, 6])
        // It is a script in its own right.
        _ = try BootScript.parse(part.text)
    }
}
