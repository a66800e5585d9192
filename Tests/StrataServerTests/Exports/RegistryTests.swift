import Foundation
import Logging
import NIOCore
import SunRPC
import Synchronization
import TestSupport
import Testing

@testable import StrataServer
@testable import Union

/// A scratch tree with two lowers and a per-client export over them, and calls from loopback
/// addresses, to drive an `ExportRegistry` directly.
final class RegistryFixture {
    let base: String
    let logger = Logger(label: "registry-test") { _ in SwiftLogNoOpLogHandler() }

    init() throws {
        self.base = try makeTemporaryDirectory("strata-registry")
        try self.write("lower/etc/hostname", "base\n")
        try self.write("lower/big", String(repeating: "x", count: 1 << 16))
        try FileManager.default.createDirectory(atPath: "\(self.base)/lower/tmp", withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: self.base) }

    func write(_ relative: String, _ text: String) throws {
        let path = "\(self.base)/\(relative)"
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: "\(self.base)/\(relative)") }

    func configuration(
        clients: String = "\"127.0.0.0/8(rw,no_root_squash,insecure)\"", export extra: String = "", server: String = "",
        tables: String = ""
    ) throws -> Configuration {
        try Configuration(
            toml: """
                [server]
                state_dir = "\(self.base)/state"
                \(server)
                \(tables)

                [[export]]
                path = "/diskless"
                lowers = ["\(self.base)/lower"]
                upper = "\(self.base)/clients/{client}"
                clients = [\(clients)]
                \(extra)
                """)
    }

    func registry(
        _ configuration: Configuration, policy: NamespacePolicy = NamespacePolicy(), clock: FakeClock? = nil
    ) -> ExportRegistry {
        if let clock {
            return ExportRegistry(
                configuration: configuration, logger: self.logger, policy: policy, clock: { clock.now },
                namespaceHooks: UnionHooks())
        }
        return ExportRegistry(
            configuration: configuration, logger: self.logger, policy: policy, namespaceHooks: UnionHooks())
    }

    /// A registry over `configuration()` on a fake clock, closing namespaces as `policy` says.
    func clockedRegistry(_ policy: NamespacePolicy) throws -> (registry: ExportRegistry, clock: FakeClock) {
        let clock = FakeClock()
        return (self.registry(try self.configuration(), policy: policy, clock: clock), clock)
    }
}

extension NamespacePolicy {
    /// The defaults but for what a test sets (seconds).
    static func with(
        maxOpen: Int? = nil, minimumIdle: Double, unmountedIdle: Double? = nil, idle: Double? = nil
    ) -> Self {
        var policy = NamespacePolicy()
        policy.minimumIdleSeconds = minimumIdle
        if let maxOpen { policy.maxOpen = maxOpen }
        if let unmountedIdle { policy.unmountedIdleSeconds = unmountedIdle }
        if let idle { policy.idleSeconds = idle }
        return policy
    }
}

/// A value set by one thread and read by another.
final class Slot<Value: Sendable>: Sendable {
    let mutex = Mutex<Value?>(nil)
    func set(_ value: Value) { self.mutex.withLock { $0 = value } }
    var value: Value? { self.mutex.withLock { $0 } }
}

final class FakeClock: Sendable {
    let seconds = Mutex<Double>(1000)
    var now: Double { self.seconds.withLock { $0 } }
    func advance(_ by: Double) { self.seconds.withLock { $0 += by } }
}

func call(from address: String, machineName: String = "m", uid: UInt32 = 0) throws -> RPCCallContext {
    RPCCallContext(
        xid: 1, program: 100005, version: 3, procedure: 1,
        credential: .sys(AuthSysParameters(stamp: 1, machineName: machineName, uid: uid, gid: 0, groups: [])),
        remoteAddress: try SocketAddress(ipAddress: address, port: 700), localAddress: nil, transport: .tcp,
        logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
}

extension ExportRegistry {
    func mountOK(
        _ path: String = "/diskless", from address: String, machineName: String = "m"
    ) throws -> (ExportCall, [UInt8]) {
        try self.mount(path: path, call: call(from: address, machineName: machineName)).get()
    }
}

@Suite struct ReadOnlyClientTests {
    @Test func aReadOnlyClientGetsNoUpperAndSeesTheLowers() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(
            try fixture.configuration(clients: "\"127.0.0.2(rw,insecure)\", \"*(ro,insecure)\""))
        defer { registry.closeAll() }
        let (guest, handle) = try registry.mountOK(from: "127.0.0.9")
        #expect(guest.isReadOnly && guest.namespace.isReadOnly)
        #expect(!fixture.exists("clients/127.0.0.9"), "a read-only client needs no upper layer")
        #expect(!fixture.exists("clients"), "no upper of anybody was created")
        let (admitted, root) = try registry.resolve(fileHandle: handle, for: try call(from: "127.0.0.9")).get()
        let (_, attributes) = try admitted.namespace.lookup(root, Array("etc".utf8), as: admitted.credentials)
        #expect(attributes.type == .directory)
        // Every read-only client shares one namespace.
        let (other, _) = try registry.mountOK(from: "127.0.0.10")
        #expect(other.namespace === guest.namespace)
        #expect(registry.openNamespaceCount == 1)
        // A read-write client's handles are refused to a guest, and the other way round.
        let (writer, writerRoot) = try registry.mountOK(from: "127.0.0.2")
        #expect(!writer.isReadOnly && fixture.exists("clients/127.0.0.2/tree"))
        guard case .failure(.accessDenied) = registry.resolve(fileHandle: writerRoot, for: try call(from: "127.0.0.9"))
        else {
            Issue.record("a guest resolved a read-write client's handle")
            return
        }
        guard case .failure = registry.resolve(fileHandle: handle, for: try call(from: "127.0.0.2")) else {
            Issue.record("a read-write client resolved the shared read-only namespace's handle")
            return
        }
    }
}

@Suite struct HostnameKeyTests {
    /// `client_key = "hostname"`: the machine name is trusted only where the operator vouches for
    /// the host (a rule naming it, or `[clients]`); others are keyed by address.
    @Test func machineNamesAreHonouredOnlyForNamedHosts() throws {
        let fixture = try RegistryFixture()
        let configuration = try fixture.configuration(
            clients: "\"127.0.0.7(rw,insecure)\", \"127.0.0.0/8(rw,insecure)\"", export: "client_key = \"hostname\"",
            tables: "[clients]\n\"listed-pc\" = \"listed-pc\"\n")
        let registry = fixture.registry(configuration)
        defer { registry.closeAll() }
        // A network rule: an invented name does not name an upper; the address does.
        #expect(try registry.mountOK(from: "127.0.0.5", machineName: "invented-1").0.clientKey == "127.0.0.5")
        #expect(try registry.mountOK(from: "127.0.0.5", machineName: "invented-2").0.clientKey == "127.0.0.5")
        #expect(!fixture.exists("clients/invented-1") && !fixture.exists("clients/invented-2"))
        // A name listed in [clients] is honoured.
        #expect(try registry.mountOK(from: "127.0.0.6", machineName: "listed-pc").0.clientKey == "listed-pc")
        // A rule for this very host (a NAT gateway): its machines are told apart by name.
        #expect(try registry.mountOK(from: "127.0.0.7", machineName: "behind-nat-1").0.clientKey == "behind-nat-1")
        #expect(try registry.mountOK(from: "127.0.0.7", machineName: "behind-nat-2").0.clientKey == "behind-nat-2")
    }

    /// A `*(ro)` guest sending another client's machine name does not read that client's upper.
    @Test func aGuestSendingAnotherClientsNameDoesNotReadItsUpper() throws {
        let fixture = try RegistryFixture()
        let configuration = try fixture.configuration(
            clients: "\"127.0.0.2(rw,no_root_squash,insecure)\", \"*(ro,insecure)\"",
            export: "client_key = \"hostname\"",
            tables: "[clients]\n\"victim\" = \"victim\"\n")
        let registry = fixture.registry(configuration)
        defer { registry.closeAll() }
        let (victim, victimRoot) = try registry.mountOK(from: "127.0.0.2", machineName: "victim")
        #expect(victim.clientKey == "victim")
        let root = try ServerFileHandle(bytes: victimRoot).object
        _ = try victim.namespace.create(
            in: root, Array("secret".utf8), mode: .guarded, attributes: SetAttributes(mode: 0o644),
            as: victim.credentials)
        let (guest, guestRoot) = try registry.mountOK(from: "127.0.0.9", machineName: "victim")
        #expect(guest.namespace !== victim.namespace)
        let guestObject = try ServerFileHandle(bytes: guestRoot).object
        #expect(throws: UnionError.noEntry) {
            try guest.namespace.lookup(guestObject, Array("secret".utf8), as: guest.credentials)
        }
    }
}

@Suite struct ClientLimitTests {
    @Test func aNewClientBeyondMaxClientsIsRefusedAndKnownOnesAreNot() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration(export: "max_clients = 2"))
        defer { registry.closeAll() }
        _ = try registry.mountOK(from: "127.0.0.2")
        _ = try registry.mountOK(from: "127.0.0.3")
        guard
            case .failure(.clientLimitReached(let why)) = registry.mount(
                path: "/diskless", call: try call(from: "127.0.0.4"))
        else {
            Issue.record("a third client was admitted beyond max_clients = 2")
            return
        }
        #expect(why.contains("max_clients") && why.contains("/diskless"), "\(why)")
        #expect(!fixture.exists("clients/127.0.0.4"))
        // Known clients still mount, after a restart too (the count comes from disk).
        registry.closeAll()
        let restarted = fixture.registry(try fixture.configuration(export: "max_clients = 2"))
        defer { restarted.closeAll() }
        _ = try restarted.mountOK(from: "127.0.0.3")
        #expect(throws: CallRejection.self) { try restarted.mountOK(from: "127.0.0.4") }
        // A reset frees a place.
        _ = try restarted.resetClient(key: "127.0.0.2", exportPath: nil)
        _ = try restarted.mountOK(from: "127.0.0.4")
    }

    /// First mounts of different clients open their namespaces at the same time (a room powering
    /// on): the limit still admits exactly max_clients of them, whatever the interleaving.
    @Test func concurrentFirstMountsTakeExactlyTheFreePlaces() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration(export: "max_clients = 5"))
        defer { registry.closeAll() }
        let admitted = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 16) { index in
            let result = (try? call(from: "127.0.1.\(index + 2)")).map { registry.mount(path: "/diskless", call: $0) }
            switch result {
            case .success?: admitted.add(1, ordering: .relaxed)
            case .failure(.clientLimitReached)?: refused.add(1, ordering: .relaxed)
            default: Issue.record("client \(index): \(String(describing: result))")
            }
        }
        #expect(admitted.load(ordering: .relaxed) == 5)
        #expect(refused.load(ordering: .relaxed) == 11)
        let uppers = try FileManager.default.contentsOfDirectory(atPath: fixture.base + "/clients")
        #expect(uppers.count == 5, "\(uppers)")
    }

    /// A room powering on: 48 first MNTs at once, each client its own working upper (a complete layer on disk, a
    /// file it makes lands there and nowhere else), and each of its handles resolves after a restart.
    @Test func concurrentFirstMountsEachGetAWorkingDistinctUpper() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        let clients = 48
        let made = Mutex<[Int: [UInt8]]>([:])
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: clients) { index in
            do {
                let (admitted, root) = try registry.mountOK(from: "127.0.2.\(index + 2)")
                let (object, _) = try admitted.namespace.create(
                    in: try ServerFileHandle(bytes: root).object, Array("mine-\(index)".utf8), mode: .guarded,
                    attributes: SetAttributes(mode: 0o644), as: admitted.credentials)
                made.withLock { $0[index] = admitted.fileHandle(object) }
            } catch {
                failures.withLock { $0.append("client \(index): \(error)") }
            }
        }
        registry.closeAll()
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        let uppers = try FileManager.default.contentsOfDirectory(atPath: fixture.base + "/clients")
        #expect(uppers.count == clients, "\(uppers)")
        for index in 0..<clients {
            let upper = fixture.base + "/clients/127.0.2.\(index + 2)"
            #expect(try LayerFormat.isStrataLayer(upper))
            let mine = try FileManager.default.contentsOfDirectory(atPath: upper + "/tree")
            #expect(mine == ["mine-\(index)"], "\(upper): \(mine)")
        }
        let restarted = fixture.registry(try fixture.configuration())
        defer { restarted.closeAll() }
        for (index, handle) in made.withLock({ $0 }) {
            let (admitted, _) = try restarted.mountOK(from: "127.0.2.\(index + 2)")
            let object = try ServerFileHandle(bytes: handle).object
            #expect(try admitted.namespace.getattr(object).type == Union.FileType.regular, "client \(index)")
        }
    }

    /// MNTs at once share writes of the mount table: none of them is lost on disk.
    @Test func concurrentMountsAreAllInTheMountTableOnDisk() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        DispatchQueue.concurrentPerform(iterations: 24) { index in
            #expect(throws: Never.self) { try registry.mountOK(from: "127.0.3.\(index + 2)") }
        }
        let onDisk = ExportRegistry.loadMountTable(stateDirectory: fixture.base + "/state")
        #expect(Set(onDisk.map(\.host)) == Set((0..<24).map { "127.0.3.\($0 + 2)" }), "\(onDisk)")
        registry.unmount(path: "/diskless", host: "127.0.3.2")
        #expect(ExportRegistry.loadMountTable(stateDirectory: fixture.base + "/state").count == 23)
    }

    @Test func theServerWideLimitAppliesToExportsWithoutTheirOwn() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration(server: "max_clients = 1"))
        defer { registry.closeAll() }
        _ = try registry.mountOK(from: "127.0.0.2")
        #expect(throws: CallRejection.self) { try registry.mountOK(from: "127.0.0.3") }
    }
}

@Suite struct IdleNamespaceTests {
    @Test func idleAndUnmountedNamespacesCloseAndReopenWithTheirHandles() throws {
        let fixture = try RegistryFixture()
        let (registry, clock) = try fixture.clockedRegistry(.with(minimumIdle: 1, unmountedIdle: 5, idle: 100))
        defer { registry.closeAll() }
        let (a, rootA) = try registry.mountOK(from: "127.0.0.2")
        let made = try a.namespace.create(
            in: try ServerFileHandle(bytes: rootA).object, Array("kept".utf8), mode: .guarded,
            attributes: SetAttributes(mode: 0o644), as: a.credentials)
        let fileHandle = a.fileHandle(made.0)
        _ = try registry.mountOK(from: "127.0.0.3")
        #expect(registry.openNamespaceCount == 2)

        clock.advance(10)
        #expect(registry.closeIdleNamespaces() == 0, "both still mounted and idle less than idleSeconds")
        registry.unmount(path: "/diskless", host: "127.0.0.3")
        #expect(registry.closeIdleNamespaces() == 1, "the unmounted one closes")
        #expect(registry.openNamespaceCount == 1)
        clock.advance(100)
        #expect(registry.closeIdleNamespaces() == 1, "idle past idleSeconds closes though mounted")
        #expect(registry.openNamespaceCount == 0)
        #expect(a.namespace.hasBeenClosed)

        // The handle from before the close still names the file: the namespace reopens.
        let (again, object) = try registry.resolve(fileHandle: fileHandle, for: try call(from: "127.0.0.2")).get()
        #expect(again.namespace !== a.namespace)
        #expect(try again.namespace.getattr(object).type == .regular)
        #expect(registry.openNamespaceCount == 1)
    }

    @Test func beyondTheBoundTheLeastRecentlyUsedCloses() throws {
        let fixture = try RegistryFixture()
        let (registry, clock) = try fixture.clockedRegistry(.with(maxOpen: 2, minimumIdle: 1))
        defer { registry.closeAll() }
        let (first, _) = try registry.mountOK(from: "127.0.0.2")
        clock.advance(2)
        let (second, _) = try registry.mountOK(from: "127.0.0.3")
        clock.advance(2)
        _ = try registry.mountOK(from: "127.0.0.4")
        #expect(registry.openNamespaceCount == 2)
        #expect(first.namespace.hasBeenClosed, "the least recently used")
        #expect(!second.namespace.hasBeenClosed)
        // One used within minimumIdleSeconds is never closed, even beyond the bound.
        _ = try registry.mountOK(from: "127.0.0.5")
        _ = try registry.mountOK(from: "127.0.0.6")
        #expect(
            registry.openNamespaceCount == 3, "second closed; the two just used stay, the bound is exceeded for now")
    }
}

@Suite struct ClientResetRaceTests {
    /// A reset while the client has a copy-up in flight and re-mounts used to
    /// leave a namespace on the deleted upper (every CREATE answered NOENT until a restart).
    /// Here a copy-up is held in the union's copy hook, the reset is held between closing the
    /// namespace and moving the upper aside (its hook), and the re-mount comes exactly then: it
    /// must wait for the reset and get a fresh upper, and the copy-up, let go last, must not
    /// land in it.
    @Test func aRemountDuringAResetWaitsAndGetsAFreshUpper() throws {
        let fixture = try RegistryFixture()
        let registry = fixture.registry(try fixture.configuration())
        defer { registry.closeAll() }
        let (client, rootBytes) = try registry.mountOK(from: "127.0.0.2")
        let root = try ServerFileHandle(bytes: rootBytes).object
        let (big, _) = try client.namespace.lookup(root, Array("big".utf8), as: client.credentials)

        let copying = DispatchSemaphore(value: 0)
        let releaseCopy = DispatchSemaphore(value: 0)
        client.namespace.hooks?.whileCopying.withLock {
            $0 = {
                copying.signal()
                _ = releaseCopy.wait(timeout: .now() + 30)
            }
        }
        let resetClosed = DispatchSemaphore(value: 0)
        let releaseReset = DispatchSemaphore(value: 0)
        registry.resetHook.withLock {
            $0 = { step in
                guard step == "closed" else { return }
                resetClosed.signal()
                _ = releaseReset.wait(timeout: .now() + 30)
            }
        }
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            // The copy-up of a lower file for WRITE; it ends STALE or OK, either is fine.
            _ = [UInt8](repeating: 1, count: 8).withUnsafeBytes { bytes in
                try? client.namespace.write(big, offset: 0, data: bytes, stable: .fileSync, as: client.credentials)
            }
        }
        #expect(copying.wait(timeout: .now() + 10) == .success, "the copy-up started")
        let reset = Slot<Result<[String], any Error>>()
        DispatchQueue.global().async(group: group) {
            reset.set(Result { try registry.resetClient(key: "127.0.0.2", exportPath: nil) })
        }
        #expect(resetClosed.wait(timeout: .now() + 10) == .success, "the reset closed the namespace")
        let remount = Slot<Result<(ExportCall, [UInt8]), CallRejection>>()
        let remountCall = try call(from: "127.0.0.2")
        DispatchQueue.global().async(group: group) {
            remount.set(registry.mount(path: "/diskless", call: remountCall))
        }
        // The re-mount must queue behind the reset, not open the upper about to be deleted.
        let deadline = Date().addingTimeInterval(10)
        while registry.closingKeys.waitingCount == 0, remount.value == nil, Date() < deadline { usleep(1000) }
        #expect(remount.value == nil, "the re-mount finished while the reset had not moved the upper aside")
        releaseReset.signal()
        let remountDeadline = Date().addingTimeInterval(10)
        while remount.value == nil, Date() < remountDeadline { usleep(1000) }
        releaseCopy.signal()
        #expect(group.wait(timeout: .now() + 30) == .success)
        #expect(try reset.value?.get() == ["\(fixture.base)/clients/127.0.0.2"])
        let (fresh, freshRoot) = try #require(try remount.value?.get())
        #expect(!fresh.namespace.hasBeenClosed)
        let freshObject = try ServerFileHandle(bytes: freshRoot).object
        _ = try fresh.namespace.create(
            in: freshObject, Array("after-reset".utf8), mode: .guarded, attributes: SetAttributes(mode: 0o644),
            as: fresh.credentials)
        #expect(fixture.exists("clients/127.0.0.2/tree/after-reset"), "the namespace is on the new upper")
        #expect(
            !fixture.exists("clients/127.0.0.2/tree/big"), "the old namespace's copy-up did not land in the new upper")
    }
}

extension UnionNamespace {
    var hasBeenClosed: Bool { self.isClosed.load(ordering: .relaxed) }
}

@Suite struct SharedIdentityRegistryTests {
    /// The clients of a per-client export and its read-only namespace take lower fileids from one shared store: the
    /// same numbers in every client, no row in any client's upper, each client's handles its own; across a server
    /// restart the handles stay valid.
    @Test func clientsShareOneStoreOfLowerIdentitiesAndKeepTheirHandles() throws {
        let fixture = try RegistryFixture()
        let configuration = try fixture.configuration(
            clients: "\"127.0.0.2(rw,insecure)\", \"127.0.0.3(rw,insecure)\", \"*(ro,insecure)\"")
        var registry = fixture.registry(configuration)
        func lookupEtc(_ address: String) throws -> (ExportCall, ObjectHandle, UInt64) {
            let (admitted, rootBytes) = try registry.mountOK(from: address)
            let root = try ServerFileHandle(bytes: rootBytes).object
            let (h, a) = try admitted.namespace.lookup(root, Array("etc".utf8), as: admitted.credentials)
            return (admitted, h, a.fileid)
        }
        let (a, etcOfA, fileidA) = try lookupEtc("127.0.0.2")
        let (c, _, fileidC) = try lookupEtc("127.0.0.3")
        let (guest, _, _) = try lookupEtc("127.0.0.9")
        #expect(fileidA == fileidC)
        #expect(a.namespace.identities.shared != nil)
        #expect(a.namespace.identities.shared === c.namespace.identities.shared)
        #expect(guest.namespace.identities === a.namespace.identities.shared?.store)
        #expect(throws: UnionError.stale) { try c.namespace.getattr(etcOfA) }
        registry.closeAll()

        registry = fixture.registry(configuration)
        defer { registry.closeAll() }
        let (again, _, fileidAgain) = try lookupEtc("127.0.0.2")
        #expect(fileidAgain == fileidA)
        #expect(try again.namespace.getattr(etcOfA).fileid == fileidA)
    }
}
