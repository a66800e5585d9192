import Basics
import Foundation
import Testing

@testable import StrataServer
@testable import Union

extension ExportCall {
    /// The object at `path` (components joined by `/`) below `root`, looked up as the caller.
    func object(_ path: String, from root: ObjectHandle) throws -> ObjectHandle {
        var object = root
        for component in path.split(separator: "/") {
            object = try self.namespace.lookup(object, Array(component.utf8), as: self.credentials).0
        }
        return object
    }

    func text(_ object: ObjectHandle) throws -> String {
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = try bytes.withUnsafeMutableBytes { buffer in
            try self.namespace.read(object, offset: 0, into: buffer, as: self.credentials).count
        }
        return String(decoding: bytes.prefix(count), as: UTF8.self)
    }
}

extension ExportRegistry {
    /// The text of `path` as the client at `address` sees it through a handle it mounted.
    func read(_ path: String, from address: String, root handle: [UInt8]) throws -> String {
        let (admitted, root) = try self.resolve(fileHandle: handle, for: call(from: address)).get()
        return try admitted.text(try admitted.object(path, from: root))
    }
}

/// Image versions driven through the registry: publish under a mounted client, moves at MNT,
/// changed layers refused, rollback, gc, conflicts, pins.
@Suite struct ImageVersionTests {
    /// A fixture whose second image (`lower2`) changes etc/hostname and adds etc/new.
    func fixtureWithSecondImage() throws -> RegistryFixture {
        let fixture = try RegistryFixture()
        try fixture.write("lower2/etc/hostname", "second\n")
        try fixture.write("lower2/etc/new", "added\n")
        try fixture.write("lower2/big", String(repeating: "x", count: 1 << 16))
        return fixture
    }

    @Test func mountedClientsStayAndTheNextMountMoves() throws {
        let fixture = try self.fixtureWithSecondImage()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        let (_, rootA) = try registry.mountOK(from: "127.0.0.2")
        let (callA, _) = try registry.resolve(fileHandle: rootA, for: call(from: "127.0.0.2")).get()
        let fileA = callA.fileHandle(try callA.object("etc/hostname", from: callA.namespace.rootHandle))
        let version = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        #expect(version.number == 2)
        // A keeps its version: same handles, same bytes.
        #expect(try registry.read("etc/hostname", from: "127.0.0.2", root: rootA) == "base\n")
        let (again, object) = try registry.resolve(fileHandle: fileA, for: call(from: "127.0.0.2")).get()
        #expect(try again.text(object) == "base\n")
        // B's first mount gets version 2.
        let (_, rootB) = try registry.mountOK(from: "127.0.0.3")
        #expect(try registry.read("etc/hostname", from: "127.0.0.3", root: rootB) == "second\n")
        #expect(try registry.read("etc/new", from: "127.0.0.3", root: rootB) == "added\n")
        // A's next mount moves it; its old handles are stale, never another file.
        let (_, newRootA) = try registry.mountOK(from: "127.0.0.2")
        #expect(newRootA != rootA)
        #expect(try registry.read("etc/hostname", from: "127.0.0.2", root: newRootA) == "second\n")
        #expect(registry.resolve(fileHandle: fileA, for: try call(from: "127.0.0.2")).failure == .stale)
        #expect(registry.resolve(fileHandle: rootA, for: try call(from: "127.0.0.2")).failure == .stale)
        let clients = registry.clients()
        #expect(clients.map(\.version) == [2, 2])
        #expect(
            registry.imageMetrics().contains("strata_client_image_version{export=\"/diskless\",client=\"127.0.0.2\"} 2")
        )
    }

    @Test func placementsAndVersionsSurviveARestart() throws {
        let fixture = try self.fixtureWithSecondImage()
        let configuration = try fixture.configuration()
        let registry = fixture.registry(configuration)
        let (_, rootA) = try registry.mountOK(from: "127.0.0.2")
        _ = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        let (_, rootB) = try registry.mountOK(from: "127.0.0.3")
        registry.closeAll()
        let restarted = fixture.registry(configuration)
        defer { restarted.closeAll() }
        #expect(try restarted.read("etc/hostname", from: "127.0.0.2", root: rootA) == "base\n")
        #expect(try restarted.read("etc/hostname", from: "127.0.0.3", root: rootB) == "second\n")
        #expect(restarted.imageReports().first?.versions.map(\.clients) == [["127.0.0.2"], ["127.0.0.3"]])
    }

    @Test func aChangedLayerIsRefusedNamingTheLayerAndTheEntry() throws {
        let fixture = try self.fixtureWithSecondImage()
        let configuration = try fixture.configuration()
        let registry = fixture.registry(configuration)
        _ = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        registry.closeAll()
        try fixture.write("lower2/etc/new", "edited in place\n")
        let restarted = fixture.registry(configuration)
        defer { restarted.closeAll() }
        let result = restarted.mount(path: "/diskless", call: try call(from: "127.0.0.3"))
        guard case .failure(.layerUnavailable(let message)) = result else {
            Issue.record("a changed layer was served: \(result)")
            return
        }
        #expect(message.contains("\(fixture.base)/lower2") && message.contains("etc/new"), "\(message)")
        #expect(message.contains("version 2"))
    }

    @Test func rollbackGcAndStaleHandlesOfRemovedVersions() throws {
        let fixture = try self.fixtureWithSecondImage()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        _ = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        let (_, rootB) = try registry.mountOK(from: "127.0.0.3")
        #expect(try registry.rollback(exportPath: "/diskless", to: nil) == 1)
        let (_, rootC) = try registry.mountOK(from: "127.0.0.4")
        #expect(try registry.read("etc/hostname", from: "127.0.0.4", root: rootC) == "base\n")
        // Version 2 is B's: refused, with B named.
        #expect { try registry.collectGarbage(exportPath: "/diskless", version: 2) } throws: {
            "\($0)".contains("127.0.0.3")
        }
        // B moves back to 1; then 2 is unused and goes.
        _ = try registry.mountOK(from: "127.0.0.3")
        let reports = try registry.collectGarbage(exportPath: "/diskless", version: nil)
        #expect(reports.map(\.removed) == [[2]])
        #expect(registry.resolve(fileHandle: rootB, for: try call(from: "127.0.0.3")).failure == .stale)
        #expect(throws: (any Error).self) { try registry.rollback(exportPath: "/diskless", to: 2) }
        // Numbers are never reused.
        #expect(try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"]).number == 3)
    }

    @Test func aReadOnlyClientsHandlesOfARemovedVersionAreStale() throws {
        let fixture = try self.fixtureWithSecondImage()
        let registry = fixture.registry(try fixture.configuration(clients: "\"*(ro,insecure)\""))
        defer { registry.closeAll() }
        _ = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        let (_, root) = try registry.mountOK(from: "127.0.0.9")
        #expect(try registry.read("etc/hostname", from: "127.0.0.9", root: root) == "second\n")
        _ = try registry.rollback(exportPath: "/diskless", to: 1)
        let (_, rootV1) = try registry.mountOK(from: "127.0.0.9")
        #expect(try registry.read("etc/hostname", from: "127.0.0.9", root: rootV1) == "base\n")
        #expect(try registry.collectGarbage(exportPath: "/diskless", version: 2).map(\.removed) == [[2]])
        #expect(registry.resolve(fileHandle: root, for: try call(from: "127.0.0.9")).failure == .stale)
        #expect(!fixture.exists("state/exports/\(String(registry.exports[0].exportID, radix: 16))/v2"))
    }

    @Test func conflictsNameWhatTheClientChangedThatTheNewVersionChanged() throws {
        let fixture = try self.fixtureWithSecondImage()
        try fixture.write("lower/same", "same\n")
        try fixture.write("lower2/same", "same\n")
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, "\(fixture.base)/lower/same", &times, 0) == 0)
        #expect(utimensat(AT_FDCWD, "\(fixture.base)/lower2/same", &times, 0) == 0)
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        let (_, root) = try registry.mountOK(from: "127.0.0.2")
        let (admitted, object) = try registry.resolve(fileHandle: root, for: call(from: "127.0.0.2")).get()
        let etc = try admitted.object("etc", from: object)
        try admitted.namespace.remove(in: etc, Array("hostname".utf8), as: admitted.credentials)
        // "big" was written again for version 2 (new times): changed there too. "same" is the
        // same in both versions: removing it is the client's own business.
        try admitted.namespace.remove(in: object, Array("big".utf8), as: admitted.credentials)
        try admitted.namespace.remove(in: object, Array("same".utf8), as: admitted.credentials)
        _ = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        #expect(try registry.conflicts(exportPath: "/diskless", clientKey: "127.0.0.2").from == nil)
        _ = try registry.mountOK(from: "127.0.0.2")
        let report = try registry.conflicts(exportPath: "/diskless", clientKey: "127.0.0.2")
        #expect(report.from == 1 && report.to == 2)
        #expect(report.names == ["big", "etc/hostname"])
    }

    @Test func aPinnedClientMovesToItsPinAndAMissingPinIsRefused() throws {
        let fixture = try self.fixtureWithSecondImage()
        let pinned = try fixture.configuration(tables: "[clients]\n\"127.0.0.5\" = { key = \"pc5\", pin = 1 }")
        #expect(pinned.clientPins == ["pc5": 1] && pinned.clientKeys["127.0.0.5"] == "pc5")
        let registry = fixture.registry(pinned)
        defer { registry.closeAll() }
        _ = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        let (_, root) = try registry.mountOK(from: "127.0.0.5")
        #expect(try registry.read("etc/hostname", from: "127.0.0.5", root: root) == "base\n")
        #expect(registry.imageReports().first?.versions.first?.pinned == ["pc5"])
        try registry.reload(try fixture.configuration(tables: "[clients]\n\"127.0.0.5\" = { key = \"pc5\", pin = 7 }"))
        guard
            case .failure(.layerUnavailable(let message)) = registry.mount(
                path: "/diskless", call: try call(from: "127.0.0.5"))
        else {
            Issue.record("a pin to a missing version was accepted")
            return
        }
        #expect(message.contains("pinned to version 7"))
    }

    @Test func changedLowersInTheFilePublishAtReloadInsteadOfSwappingUnderClients() throws {
        let fixture = try self.fixtureWithSecondImage()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        let (_, rootA) = try registry.mountOK(from: "127.0.0.2")
        var changed = try fixture.configuration()
        changed.exports[0].lowers = ["\(fixture.base)/lower2"]
        let lines = try registry.reload(changed)
        #expect(lines.contains { $0.contains("image version 2") })
        #expect(try registry.read("etc/hostname", from: "127.0.0.2", root: rootA) == "base\n")
        let (_, rootB) = try registry.mountOK(from: "127.0.0.3")
        #expect(try registry.read("etc/hostname", from: "127.0.0.3", root: rootB) == "second\n")
        // The same file again publishes nothing.
        #expect(try registry.reload(changed).isEmpty)
    }

    @Test func aFileNamingTheNewestVersionsLowersPublishesNothing() throws {
        let fixture = try self.fixtureWithSecondImage()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        _ = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        var synced = try fixture.configuration()
        synced.exports[0].lowers = ["\(fixture.base)/lower2"]
        #expect(try registry.reload(synced).contains { $0.contains("nothing published") })
        #expect(registry.imageReports().first?.versions.map(\.number) == [1, 2])
        registry.closeAll()
        let restarted = fixture.registry(synced)
        defer { restarted.closeAll() }
        #expect(restarted.imageReports().first?.versions.map(\.number) == [1, 2], "a restart publishes nothing either")
    }

    @Test func aPublishOfLayersWhereSomebodyWritesIsRefused() throws {
        let fixture = try self.fixtureWithSecondImage()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        _ = try registry.mountOK(from: "127.0.0.2")
        for (lowers, named) in [
            (["\(fixture.base)/clients/127.0.0.2/tree"], "upper"), (["\(fixture.base)/state"], "state_dir"),
            (["relative"], "absolute"), (["\(fixture.base)/none"], "not a directory"), ([], "at least one"),
        ] {
            #expect { try registry.publish(exportPath: "/diskless", lowers: lowers) } throws: {
                "\($0)".contains(named)
            }
        }
        #expect { try registry.publish(exportPath: "/other", lowers: ["\(fixture.base)/lower2"]) } throws: {
            "\($0)".contains("/diskless")
        }
        #expect(registry.imageReports().isEmpty, "nothing was published")
    }

    @Test func versionOneKeepsTheHandlesOfBeforeImages() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        let export = registry.exports[0]
        #expect(registry.sharedTag(version: 1) == 0 && registry.sharedTag(version: 2) != 0)
        #expect(
            registry.clientTag(export: export, clientKey: "k", generation: 0, version: 1)
                == ExportRegistry.fold(FNV1a64.hash("k#0".utf8)))
        #expect(
            registry.clientTag(export: export, clientKey: "k", generation: 0, version: 2)
                != registry.clientTag(export: export, clientKey: "k", generation: 0, version: 1))
    }
}

/// A client reset on a versioned export closes the namespace of the version the client is on.
@Suite struct ImageResetTests {
    @Test func aResetClosesTheNamespaceOfTheClientsVersionAndTheRemountGetsAFreshUpper() throws {
        let fixture = try RegistryFixture()
        try fixture.write("lower2/etc/hostname", "second\n")
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        _ = try registry.publish(exportPath: "/diskless", lowers: ["\(fixture.base)/lower2"])
        let (mounted, root) = try registry.mountOK(from: "127.0.0.2")
        let (admitted, object) = try registry.resolve(fileHandle: root, for: call(from: "127.0.0.2")).get()
        try admitted.namespace.remove(
            in: try admitted.object("etc", from: object), Array("hostname".utf8), as: admitted.credentials)
        #expect(registry.openNamespaceCount == 1)
        #expect(try registry.resetClient(key: "127.0.0.2", exportPath: nil).count == 1)
        #expect(registry.openNamespaceCount == 0, "the version-2 namespace of the client was closed")
        let isClosed = mounted.namespace.isClosed.load(ordering: .acquiring)
        #expect(isClosed)
        let (_, fresh) = try registry.mountOK(from: "127.0.0.2")
        #expect(
            try registry.read("etc/hostname", from: "127.0.0.2", root: fresh) == "second\n",
            "a pristine upper over version 2")
    }
}
