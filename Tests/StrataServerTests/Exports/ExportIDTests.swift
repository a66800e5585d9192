import Foundation
import Testing

@testable import StrataServer

/// The text of the error `body` throws (any error type: the configuration may report one or all).
func errorText(_ body: () throws -> Void) -> String {
    do {
        try body()
        return "(no error)"
    } catch {
        return "\(error)"
    }
}

func exportTable(_ path: String, id: String? = nil, clients: String = "\"*(ro)\"") -> String {
    "[[export]]\npath = \"\(path)\"\nlowers = [\"/srv/base\"]\nclients = [\(clients)]\n"
        + (id.map { "id = \($0)\n" } ?? "")
}

@Suite struct ExportIDConfigurationTests {
    @Test func anExplicitIDIsTheExportsIdentifier() throws {
        let configuration = try Configuration(toml: exportTable("/a", id: "7") + exportTable("/b"))
        #expect(configuration.exports[0].exportID == 7)
        #expect(
            configuration.exports[1].exportID == configuration.exports[1].pathHashID,
            "without id, the path's hash as before")
    }

    @Test(arguments: ["0", "16777216", "-1"])
    func anIDOutOfRangeNamesTheKey(id: String) {
        let text = errorText { _ = try Configuration(toml: exportTable("/a", id: id)) }
        #expect(
            text.contains(
                "export[0].id = \(id): a number from 1 to 16777215: the export's identifier in file handles (exports(5) fsid=); once clients have mounted, keep it, or their handles go stale"
            ),
            "\(text)")
    }

    @Test func twoExportsWithOneIDAreRefused() {
        let text = errorText { _ = try Configuration(toml: exportTable("/a", id: "5") + exportTable("/b", id: "5")) }
        #expect(
            text.contains("export[1].id = 5: export \"/a\" has the same identifier; give each export its own id"),
            "\(text)")
    }

    @Test func anIDEqualToAnotherExportsDerivedIDIsRefused() throws {
        let derived = try Configuration(toml: exportTable("/a")).exports[0].pathHashID
        let text = errorText { _ = try Configuration(toml: exportTable("/a") + exportTable("/b", id: "\(derived)")) }
        #expect(
            text.contains(
                "export[1].id = \(derived): export \"/a\" has the same identifier; give each export its own id"),
            "\(text)")
    }

    @Test func fsidInAClientRulePointsToTheIDKey() {
        let text = errorText { _ = try Configuration(toml: exportTable("/a", clients: "\"*(rw,fsid=5)\"")) }
        #expect(
            text.contains(
                "export[0].clients = \"*(rw,fsid=5)\": fsid= is not a client option in Strata: set id = 5 in this [[export]] table (the export's identifier in file handles)"
            ),
            "\(text)")
    }

    @Test func maxClientsIsChecked() throws {
        let configuration = try Configuration(
            toml: "[server]\nmax_clients = 3\n" + exportTable("/a") + "max_clients = 9\n" + exportTable("/b"))
        #expect(configuration.server.maxClients == 3)
        #expect(configuration.exports[0].clientLimit(server: configuration.server) == 9)
        #expect(configuration.exports[1].clientLimit(server: configuration.server) == 3)
        let text = errorText { _ = try Configuration(toml: exportTable("/a") + "max_clients = 0\n") }
        #expect(
            text.contains(
                "export[0].max_clients = 0: a number of client upper layers from 1 to 1000000 (default 1024); a new client beyond it is refused at mount"
            ),
            "\(text)")
    }
}

@Suite struct SpareUpperConfigurationTests {
    @Test func spareUppersNeedAPerClientUpperNamedInItsLastComponent() throws {
        let fine = try Configuration(toml: exportTable("/a") + "upper = \"/srv/uppers/c-{client}\"\nspare_uppers = 8\n")
        #expect(fine.exports[0].spareUppers == 8)
        #expect(try Configuration(toml: exportTable("/a")).exports[0].spareUppers == 0)
        for upper in ["/srv/{client}/upper", "/srv/upper"] {
            let text = errorText {
                _ = try Configuration(toml: exportTable("/a") + "upper = \"\(upper)\"\nspare_uppers = 2\n")
            }
            #expect(text.contains("export[0].spare_uppers = 2:"), "\(upper): \(text)")
            #expect(text.contains("last path component holds {client}"), "\(text)")
        }
        let text = errorText { _ = try Configuration(toml: exportTable("/a") + "spare_uppers = -1\n") }
        #expect(text.contains("export[0].spare_uppers = -1: a number of uppers from 0 to 4096"), "\(text)")
    }
}

@Suite struct ExportIDTableTests {
    @Test func exportsKeepTheirIdentifierWhenTheirIDIsRemovedAndGetTheirHashWhenNew() throws {
        var table = ExportIDTable()
        var first = try Configuration(toml: exportTable("/a") + exportTable("/b", id: "42"))
        table.assign(&first)
        #expect(
            first.exports[0].exportID == first.exports[0].pathHashID,
            "an export seen first keeps the hash it always had")
        #expect(table.idsByPath == ["/a": first.exports[0].pathHashID, "/b": 42])
        // `id` taken out of the file: the export keeps 42.
        var second = try Configuration(toml: exportTable("/a") + exportTable("/b"))
        table.assign(&second)
        #expect(second.exports[1].exportID == 42)
    }

    @Test func aRenamedExportWithItsIDKeepsItAndTheOldPathIsForgotten() throws {
        var table = ExportIDTable()
        var before = try Configuration(toml: exportTable("/old", id: "9"))
        table.assign(&before)
        var after = try Configuration(toml: exportTable("/new", id: "9"))
        table.assign(&after)
        #expect(after.exports[0].exportID == 9)
        #expect(table.idsByPath == ["/new": 9])
    }

    @Test func aNewExportWhoseHashIsRecordedForAnotherPathGetsTheNextFreeIdentifier() throws {
        var configuration = try Configuration(toml: exportTable("/a"))
        let hash = configuration.exports[0].pathHashID
        // "/gone" held that identifier once: a client may still hold its handles.
        var table = ExportIDTable(idsByPath: ["/gone": hash])
        table.assign(&configuration)
        #expect(configuration.exports[0].exportID == (hash == 0xff_ffff ? 1 : hash + 1))
        #expect(table.idsByPath["/gone"] == hash)
    }

    @Test func theTableSurvivesASaveAndLoad() throws {
        let directory = "/tmp/strata-ids-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var table = ExportIDTable()
        var configuration = try Configuration(toml: exportTable("/with space", id: "3") + exportTable("/b"))
        table.assign(&configuration)
        try table.save(stateDirectory: directory)
        #expect(ExportIDTable.load(stateDirectory: directory) == table)
    }
}

@Suite struct ReloadExportIDTests {
    @Test func aReloadThatChangesAServedExportsIDIsRefused() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration(export: "id = 5"))
        defer { registry.closeAll() }
        let (_, handle) = try registry.mountOK(from: "127.0.0.2")
        let text = errorText { try registry.reload(try fixture.configuration(export: "id = 6")) }
        #expect(
            text.contains(
                "export[0].id = 6: export \"/diskless\" is served with id 5; changing it would make every file handle its clients hold stale: set id = 5, or restart the server to change it"
            ),
            "\(text)")
        #expect(registry.exports[0].exportID == 5, "nothing applied")
        #expect(throws: Never.self) { try registry.resolve(fileHandle: handle, for: try call(from: "127.0.0.2")).get() }
        // Taking `id` out keeps the identifier (recorded in state_dir): accepted.
        try registry.reload(try fixture.configuration())
        #expect(registry.exports[0].exportID == 5)
        #expect(throws: Never.self) { try registry.resolve(fileHandle: handle, for: try call(from: "127.0.0.2")).get() }
    }

    @Test func identifiersAreRecordedInTheStateDirectory() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        registry.closeAll()
        let recorded = ExportIDTable.load(stateDirectory: "\(fixture.base)/state")
        #expect(recorded.idsByPath == ["/diskless": registry.exports[0].pathHashID])
    }
}
