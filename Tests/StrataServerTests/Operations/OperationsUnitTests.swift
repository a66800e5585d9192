import Foundation
import Logging
import Testing

@testable import StrataServer

@Suite struct LogFormatTests {
    let date = Date(timeIntervalSince1970: 0)

    @Test func textEscapesWhatAClientMaySend() {
        let line = StrataLogHandler.format(
            level: .notice, message: "MNT refused: /a\nforged", metadata: ["client": "10.0.0.1", "name": "x y\"z"],
            format: .text,
            isJournal: false, date: self.date)
        #expect(line == "1970-01-01T00:00:00.000Z notice MNT refused: /a\\nforged client=10.0.0.1 name=\"x y\\\"z\"")
    }

    @Test func timestampsAreRFC3339InUTC() {
        #expect(
            StrataLogHandler.timestamp(Date(timeIntervalSince1970: 1_796_096_116.736)) == "2026-12-01T03:35:16.736Z")
        #expect(StrataLogHandler.timestamp(Date(timeIntervalSince1970: 5.007)) == "1970-01-01T00:00:05.007Z")
    }

    @Test func journalLinesStartWithThePriorityAndHaveNoTime() {
        #expect(
            StrataLogHandler.format(
                level: .warning, message: "m", metadata: [:], format: .text, isJournal: true, date: self.date)
                == "<4>warning m")
        #expect(
            StrataLogHandler.format(
                level: .debug, message: "m", metadata: [:], format: .text, isJournal: true, date: self.date)
                == "<7>debug m")
        #expect(
            StrataLogHandler.format(
                level: .error, message: "m", metadata: [:], format: .json, isJournal: true, date: self.date
            ).hasPrefix("<3>{"))
    }

    @Test func jsonIsOneParsableObject() throws {
        let line = StrataLogHandler.format(
            level: .info, message: "a \"quoted\"\nmessage", metadata: ["export": "/x", "control": "\u{1}"],
            format: .json, isJournal: false, date: self.date)
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(
            object == [
                "time": "1970-01-01T00:00:00.000Z", "level": "info", "message": "a \"quoted\"\nmessage", "export": "/x",
                "control": "\u{1}",
            ])
    }

    @Test func journalStreamCountsOnlyWhenItIsStderr() {
        #expect(!LogControl.stderrIsJournal(environment: [:]))
        #expect(!LogControl.stderrIsJournal(environment: ["JOURNAL_STREAM": "1:1"]))
        #expect(!LogControl.stderrIsJournal(environment: ["JOURNAL_STREAM": "garbage"]))
    }

    @Test func theLevelIsSharedAndChangeable() {
        let control = LogControl(level: .info, format: .text, isJournal: false)
        let logger = Logger(label: "t") { StrataLogHandler(label: $0, control: control) }
        #expect(logger.logLevel == .info)
        control.level = .debug
        #expect(logger.logLevel == .debug, "a reload changes loggers made before it")
    }
}

@Suite struct SourceLocatorTests {
    let text = """
        # comment = not a key
        [server]
        nfs_port = 1  # trailing
        [[export]]
        path = "/a"
        [[export]]
        path = "/b"
        lowers = [
            "one",   # "not a string of the list"
            'two', "three",
        ]
        clients = ["*"]
        [clients]
        "10.0.0.1" = "lab"
        """

    @Test func findsKeysEntriesAndTables() {
        let locator = SourceLocator(text: self.text)
        func line(_ key: String, entry: Int? = nil) -> Int? {
            locator.line(of: ConfigError(key: key, value: "", allowed: "", entry: entry))
        }
        #expect(line("server.nfs_port") == 3)
        #expect(line("server.mount_port") == 2, "a missing key: its table")
        #expect(line("export[1].path") == 7)
        #expect(line("export[1].lowers", entry: 0) == 9)
        #expect(line("export[1].lowers", entry: 1) == 10)
        #expect(line("export[1].lowers", entry: 2) == 10)
        #expect(line("export[1].clients") == 12)
        #expect(line("export[0].upper") == 4)
        #expect(line("clients.\"10.0.0.1\"") == 14)
        #expect(line("nowhere") == nil)
    }
}

@Suite struct ReloadDescriptionTests {
    @Test func changesAndRestartsAreNamed() throws {
        let old = try Configuration(
            toml:
                "[server]\nnfs_port = 2049\n[[export]]\npath = \"/a\"\nlowers = [\"/l\"]\nclients = [\"10.0.0.0/24(rw)\", \"*(ro)\"]\n[[export]]\npath = \"/gone\"\nlowers = [\"/l\"]\nclients = [\"*\"]\n",
            relativeTo: "/")
        let new = try Configuration(
            toml:
                "[server]\nnfs_port = 2050\nlog_level = \"debug\"\n[clients]\n\"10.0.0.5\" = \"lab-5\"\n[[export]]\npath = \"/a\"\nlowers = [\"/l\", \"/m\"]\nclients = [\"10.0.0.0/255.255.255.0(ro)\", \"10.0.9.9(rw)\"]\n",
            relativeTo: "/")
        let (changes, restart) = describeChanges(from: old, to: new)
        #expect(
            changes == [
                "export /a: lowers /l → /l, /m",
                "export /a: rule 10.0.0.0/24(rw) → 10.0.0.0/255.255.255.0(ro)",
                "export /a: rule 10.0.9.9(rw) added",
                "export /a: rule *(ro) removed",
                "export /gone removed: its clients' file handles are now stale",
                "[clients] \"10.0.0.5\" = \"lab-5\" added",
                "server.log_level: info → debug",
            ])
        #expect(restart == ["server.nfs_port: 2049 → 2050 takes effect after a restart (systemctl restart strata)"])
    }
}

@Suite struct OverrideAttributionTests {
    /// An invalid option sets nothing, so a conflict it seems part of is the file's.
    @Test func aConflictNamesWhatSetTheValue() throws {
        let text = "[server]\nnfs_port = 2049\nmount_port = 2049\n"
        let invalid = try #require(throws: ConfigurationErrors.self) {
            try Configuration(toml: text, overrides: ConfigurationOverrides(nfsPort: 70000))
        }
        #expect(
            invalid.errors.map(\.description) == [
                "line 3: server.mount_port = 2049: the same port as server.nfs_port; NFS and MOUNT each need a port of their own (usually 2049 and 20048)",
                "--nfs-port 70000: a port number from 0 to 65535 (0 picks a free port)",
            ])
        let valid = try #require(throws: ConfigurationErrors.self) {
            try Configuration(toml: "[server]\nmount_port = 3049\n", overrides: ConfigurationOverrides(nfsPort: 3049))
        }
        #expect(
            valid.errors.map(\.description) == [
                "line 2: server.mount_port = 3049: the same port as --nfs-port; NFS and MOUNT each need a port of their own (usually 2049 and 20048)"
            ])
    }
}
