import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

@testable import StrataServer
@testable import Union

/// Log lines kept for assertions.
final class CapturedLog: Sendable {
    let lines = Mutex<[(Logger.Level, String)]>([])

    var logger: Logger {
        var logger = Logger(label: "captured") { _ in CapturingHandler(log: self) }
        logger.logLevel = .trace
        return logger
    }

    func contains(_ level: Logger.Level, _ text: String) -> Bool {
        self.lines.withLock { $0.contains { $0.0 == level && $0.1.contains(text) } }
    }

    struct CapturingHandler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
            let text =
                "\(event.message) "
                + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            self.log.lines.withLock { $0.append((event.level, text)) }
        }
    }
}

/// What a server prepares before it listens (`prepareForFirstMounts`): the shared identity store of a per-client
/// export exists before its first MNT, and that MNT's handles are those it would have been given anyway.
@Suite struct FirstMountPreparationTests {
    @Test func theSharedStoreIsOpenBeforeTheFirstMount() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        registry.prepareForFirstMounts()
        #expect(registry.sharedIdentityStores.withLock { $0.count } == 1)
        let exportID = try #require(registry.exports.first).exportID
        let store = ExportRegistry.identityDirectory(
            stateDirectory: "\(fixture.base)/state", exportID: exportID, version: 1)
        #expect(FileManager.default.fileExists(atPath: store + "/identity.db"))
        let (admitted, handle) = try registry.mountOK(from: "127.0.0.2")
        #expect(registry.sharedIdentityStores.withLock { $0.count } == 1, "the MNT opened no second store")
        let (again, _) = try registry.resolve(fileHandle: handle, for: call(from: "127.0.0.2")).get()
        #expect(again.clientKey == admitted.clientKey)
        // A lower object's fileid comes from the store prepared above (its range), as it would without preparing.
        let etc = try admitted.namespace.lookup(
            admitted.namespace.rootHandle, Array("etc".utf8), as: admitted.credentials)
        #expect(etc.0.fileid >= SharedIdentities.span)
    }

    /// `spare_uppers`: made before the server listens, invisible as clients, each new client's first MNT renames one
    /// into its place (mode 0700, as an upper made at the MNT); a client seen before takes none.
    @Test func spareUppersAreMadeAheadAndTakenByNewClientsOnly() throws {
        let fixture = try RegistryFixture()
        let configuration = try fixture.configuration(export: "spare_uppers = 2")
        let registry = fixture.registry(configuration)
        defer { registry.closeAll() }
        registry.prepareForFirstMounts()
        #expect(registry.spareUpperCount(exportPath: "/diskless") == 2)
        func spares() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: "\(fixture.base)/clients").filter {
                $0.hasPrefix(".spare-")
            }
        }
        #expect(try spares().count == 2)
        #expect(ExportRegistry.clientKeysOnDisk(template: "\(fixture.base)/clients/{client}").isEmpty)
        let (admitted, handle) = try registry.mountOK(from: "127.0.0.2")
        #expect(registry.spareUpperCount(exportPath: "/diskless") == 1)
        #expect(try spares().count == 1)
        #expect(fixture.exists("clients/127.0.0.2/layer.db"))
        // The server's alone, as an upper made at the MNT is (a spare's used to keep the umask's 0755).
        var st = stat()
        #expect(stat("\(fixture.base)/clients/127.0.0.2", &st) == 0 && st.st_mode & 0o7777 == 0o700)
        #expect(ExportRegistry.clientKeysOnDisk(template: "\(fixture.base)/clients/{client}") == ["127.0.0.2"])
        let etc = try admitted.namespace.lookup(
            admitted.namespace.rootHandle, Array("etc".utf8), as: admitted.credentials)
        _ = try admitted.namespace.create(
            in: etc.0, Array("mine".utf8), mode: .guarded, attributes: .init(mode: 0o644), as: admitted.credentials)
        #expect(fixture.exists("clients/127.0.0.2/tree/etc/mine"))
        _ = try registry.resolve(fileHandle: handle, for: call(from: "127.0.0.2")).get()
        // Mounted again (a reboot): its upper exists, no spare is taken.
        _ = try registry.mountOK(from: "127.0.0.2")
        #expect(registry.spareUpperCount(exportPath: "/diskless") == 1)
    }

    /// A restart takes the complete spares on disk made for the lowers new clients get; spares of other lowers and one
    /// a crash cut short (no sidecar) are deleted, and the pool is filled again.
    @Test func aRestartKeepsItsSparesAndDeletesOthers() throws {
        let fixture = try RegistryFixture()
        let configuration = try fixture.configuration(export: "spare_uppers = 2")
        let first = fixture.registry(configuration)
        first.prepareForFirstMounts()
        first.closeAll()
        let clients = "\(fixture.base)/clients"
        let kept = try FileManager.default.contentsOfDirectory(atPath: clients).sorted()
        #expect(kept.count == 2)
        let exportID = try #require(first.exports.first).exportID
        let stem = ExportRegistry.spareStem(
            exportID: exportID, version: 1, lowers: ["\(fixture.base)/lower"])
        #expect(kept.allSatisfy { $0.hasPrefix(stem) }, "\(kept)")
        let cutShort = stem + "cut"
        let otherLowers = ".spare-\(String(exportID, radix: 16))-v1-0-other"
        for name in [cutShort, otherLowers] {
            try FileManager.default.createDirectory(
                atPath: "\(clients)/\(name)/tree", withIntermediateDirectories: true)
        }
        #expect(FileManager.default.createFile(atPath: "\(clients)/\(otherLowers)/layer.db", contents: Data("x".utf8)))
        let restarted = fixture.registry(configuration)
        defer { restarted.closeAll() }
        restarted.prepareForFirstMounts()
        #expect(try FileManager.default.contentsOfDirectory(atPath: clients).sorted() == kept)
        #expect(restarted.spareUpperCount(exportPath: "/diskless") == 2)
    }

    /// A shutdown stops the making of spares: the sweeper's top-up after `closeAll` makes none (it would reopen the
    /// shared stores `closeAll` closed).
    @Test func noSpareIsMadeAfterShutdown() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration(export: "spare_uppers = 2"))
        registry.closeAll()
        registry.topUpSpareUppers()
        #expect(!fixture.exists("clients"))
        #expect(registry.sharedIdentityStores.withLock { $0.isEmpty })
    }

    @Test func aServerWithoutPerClientUppersPreparesNothing() throws {
        let fixture = try RegistryFixture()
        let configuration = try Configuration(
            toml: """
                [server]
                state_dir = "\(fixture.base)/state"

                [[export]]
                path = "/shared"
                lowers = ["\(fixture.base)/lower"]
                clients = ["127.0.0.0/8(ro)"]
                """)
        let registry = fixture.registry(configuration)
        defer { registry.closeAll() }
        registry.prepareForFirstMounts()
        #expect(registry.sharedIdentityStores.withLock { $0.count } == 0)
        #expect(!fixture.exists("state/.sidecar.template"))
    }
}

/// Handle resolution (`HandleResolution.swift`): a handle from the wire names its caller's own
/// namespace or is refused, with the answer a client can act on.
@Suite struct HandleResolutionTests {
    @Test func aClientsOwnHandleResolvesAndAnotherClientsIsRefused() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        let (_, handleA) = try registry.mountOK(from: "127.0.0.2")
        _ = try registry.mountOK(from: "127.0.0.3")
        let (admitted, _) = try registry.resolve(fileHandle: handleA, for: call(from: "127.0.0.2")).get()
        #expect(admitted.clientKey == "127.0.0.2")
        #expect(registry.resolve(fileHandle: handleA, for: try call(from: "127.0.0.3")).failure == .accessDenied)
        #expect(
            registry.resolve(fileHandle: handleA, for: try call(from: "192.0.2.1")).failure == .accessDenied,
            "no rule matches")
    }

    @Test func malformedHandlesAreBadAndUnknownExportsStale() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        let (_, handle) = try registry.mountOK(from: "127.0.0.2")
        #expect(
            registry.resolve(fileHandle: Array(handle.dropLast()), for: try call(from: "127.0.0.2")).failure
                == .badHandle)
        var otherExport = handle
        otherExport[3] ^= 0x55
        #expect(registry.resolve(fileHandle: otherExport, for: try call(from: "127.0.0.2")).failure == .stale)
    }

    @Test func handlesFromBeforeAResetAreStale() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        let (_, handle) = try registry.mountOK(from: "127.0.0.2")
        _ = try registry.resetClient(key: "127.0.0.2", exportPath: nil)
        _ = try registry.mountOK(from: "127.0.0.2")
        #expect(registry.resolve(fileHandle: handle, for: try call(from: "127.0.0.2")).failure == .stale)
    }
}

/// The mount table (`MountTable.swift`): MNT records, UMNT forgets, a restart reads it back,
/// and a write that fails is logged instead of swallowed.
@Suite struct MountTableTests {
    @Test func mountsAreRecordedForgottenAndSurviveARestart() throws {
        let fixture = try RegistryFixture()
        let configuration = try fixture.configuration()
        let registry = fixture.registry(configuration)
        _ = try registry.mountOK(from: "127.0.0.2")
        _ = try registry.mountOK(from: "127.0.0.3")
        registry.unmount(path: "/diskless", host: "127.0.0.3")
        registry.closeAll()
        let restarted = fixture.registry(configuration)
        defer { restarted.closeAll() }
        #expect(
            restarted.mountTable == [MountRecord(host: "127.0.0.2", directory: "/diskless", clientKey: "127.0.0.2")])
        restarted.unmountAll(host: "127.0.0.2")
        #expect(restarted.mountTable.isEmpty)
    }

    /// A room powering on: MNTs at once, each leaving its entry to the one writing the file meanwhile. When every
    /// MNT has returned, the file holds every one of them (a change the writer missed would be lost until the next).
    @Test func concurrentMountsAreAllInTheFileWhenTheyHaveReturned() throws {
        let fixture = try RegistryFixture()
        let configuration = try fixture.configuration()
        let registry = fixture.registry(configuration)
        defer { registry.closeAll() }
        let clients = 24
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: clients) { i in
            do {
                _ = try registry.mountOK(from: "127.0.1.\(i + 1)")
            } catch {
                failures.withLock { $0.append("127.0.1.\(i + 1): \(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        let onDisk = ExportRegistry.loadMountTable(stateDirectory: configuration.server.stateDirectory)
        #expect(onDisk.count == clients)
        #expect(Set(onDisk.map(\.host)) == Set(registry.mountTable.map(\.host)))
    }

    @Test func aFailedWriteIsLogged() throws {
        let fixture = try RegistryFixture()
        let log = CapturedLog()
        let registry = ExportRegistry(configuration: try fixture.configuration(), logger: log.logger)
        defer { registry.closeAll() }
        _ = try registry.mountOK(from: "127.0.0.2")
        // The mount table's path becomes a directory: the rename over it fails.
        try FileManager.default.removeItem(atPath: "\(fixture.base)/state/rmtab")
        try FileManager.default.createDirectory(
            atPath: "\(fixture.base)/state/rmtab/x", withIntermediateDirectories: true)
        registry.unmountAll(host: "127.0.0.2")
        #expect(log.contains(.error, "cannot write the mount table"))
        #expect(log.contains(.error, "rmtab"))
    }

    @Test func anUnreadableStateFileIsLoggedAndMissingOnesAreNot() throws {
        let fixture = try RegistryFixture()
        try FileManager.default.createDirectory(
            atPath: "\(fixture.base)/state/client-generations", withIntermediateDirectories: true)
        let log = CapturedLog()
        let registry = ExportRegistry(configuration: try fixture.configuration(), logger: log.logger)
        registry.closeAll()
        #expect(log.contains(.error, "client-generations"))
        #expect(!log.contains(.error, "rmtab"), "no mount table yet is normal")
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// Refusals (`Refusals.swift`): what an operator reads when a client is refused names the
/// client, the export, the rule and the fix.
@Suite struct RefusalMessageTests {
    @Test func eachRefusalNamesItsFix() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration(clients: "\"127.0.0.2(rw)\""))
        defer { registry.closeAll() }
        let known = try call(from: "127.0.0.2")
        let stranger = try call(from: "192.0.2.7")
        let noExport = registry.refusalMessage(.noSuchExport, path: "/nope", call: known)
        #expect(noExport.contains("no export /nope") && noExport.contains("/diskless"))
        let noRule = registry.refusalMessage(.accessDenied, path: "/diskless", call: stranger)
        #expect(
            noRule.contains("192.0.2.7") && noRule.contains("export[0].clients") && noRule.contains("127.0.0.2(rw)"))
        var highPort = known
        highPort.remoteAddress = try SocketAddress(ipAddress: "127.0.0.2", port: 40123)
        let weak = registry.refusalMessage(.tooWeak, path: "/diskless", call: highPort)
        #expect(weak.contains("port 40123") && weak.contains("add insecure to rule 127.0.0.2(rw)"))
        #expect(registry.mount(path: "/diskless", call: highPort).failure == .tooWeak)
    }

    @Test func aMissingLowerIsNamedWithItsKey() throws {
        let fixture = try RegistryFixture()
        let configuration = try fixture.configuration()
        try FileManager.default.removeItem(atPath: "\(fixture.base)/lower")
        let registry = fixture.registry(configuration)
        defer { registry.closeAll() }
        guard
            case .failure(.layerUnavailable(let message)) = registry.mount(
                path: "/diskless", call: try call(from: "127.0.0.2"))
        else {
            Issue.record("a mount over a missing lower was not refused as unavailable")
            return
        }
        #expect(message.contains("\(fixture.base)/lower") && message.contains("export[0].lowers"), "\(message)")
    }
}
