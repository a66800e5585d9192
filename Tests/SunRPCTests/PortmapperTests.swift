import Foundation
import Logging
import NIOCore
import NIOPosix
import SunRPCClient
import TestSupport
import Testing
import XDR

@testable import SunRPC

/// The builtin portmapper's procedures, on an arbitrary port.
@Suite struct BuiltinPortmapperTests {
    static func mapping(_ program: UInt32, _ version: UInt32, _ prot: UInt32, _ port: UInt32 = 0) -> ByteBuffer {
        xdrEncoded(PortmapperMapping(program: program, version: version, protocolNumber: prot, port: port))
    }

    @Test(arguments: RPCTransport.allCases)
    func getportDumpSetUnset(transport: RPCTransport) async throws {
        let portmapper = BuiltinPortmapper(
            registrations: [
                RPCRegistration(program: 100003, version: 3, transport: .tcp, port: 2049),
                RPCRegistration(program: 100005, version: 1, transport: .udp, port: 20048),
                RPCRegistration(program: 100005, version: 3, transport: .udp, port: 20048),
            ],
            port: 111
        )
        try await withTestServer(programs: [portmapper]) { server in
            let client = try server.client(transport)
            func getport(_ program: UInt32, _ version: UInt32, _ prot: UInt32) throws -> UInt32 {
                var reply = try client.call(
                    program: 100000,
                    version: 2,
                    procedure: 3,
                    arguments: Self.mapping(program, version, prot)
                )
                try #require(reply.status == .success)
                return try reply.body.readXDRUInt32()
            }
            #expect(try client.call(program: 100000, version: 2, procedure: 0).status == .success)
            #expect(try getport(100003, 3, 6) == 2049)
            #expect(try getport(100003, 3, 17) == 0)
            #expect(try getport(100005, 3, 17) == 20048)
            #expect(try getport(100005, 2, 17) == 20048, "any version of the program, as rpcbind")
            #expect(try getport(100000, 2, 6) == 111)
            #expect(try getport(4242, 1, 6) == 0)

            var set = try client.call(
                program: 100000, version: 2, procedure: 1, arguments: Self.mapping(4242, 1, 6, 999))
            #expect(try set.body.readXDRBool() == true)
            var setAgain = try client.call(
                program: 100000, version: 2, procedure: 1, arguments: Self.mapping(4242, 1, 6, 998))
            #expect(try setAgain.body.readXDRBool() == false)
            #expect(try getport(4242, 1, 6) == 999)

            var dump = try client.call(program: 100000, version: 2, procedure: 4)
            let list = try PortmapperMapping.decodeList(&dump.body)
            #expect(list.count == 6)
            #expect(list.contains(PortmapperMapping(program: 4242, version: 1, protocolNumber: 6, port: 999)))
            #expect(list.contains(PortmapperMapping(program: 100000, version: 2, protocolNumber: 17, port: 111)))

            var unset = try client.call(program: 100000, version: 2, procedure: 2, arguments: Self.mapping(4242, 1, 0))
            #expect(try unset.body.readXDRBool() == true)
            #expect(try getport(4242, 1, 6) == 0)

            #expect(try client.call(program: 100000, version: 2, procedure: 5).status == .procedureUnavailable)
            #expect(try client.call(program: 100000, version: 2, procedure: 3).status == .garbageArguments)
            #expect(
                try client.call(program: 100000, version: 3, procedure: 0).status == .programMismatch(low: 2, high: 2))
        }
    }

    @Test func setFromANonLoopbackClientIsRefused() throws {
        let portmapper = BuiltinPortmapper()
        var arguments = Self.mapping(4242, 1, 6, 999)
        let context = RPCCallContext(
            xid: 1,
            program: 100000,
            version: 2,
            procedure: 1,
            credential: .none,
            remoteAddress: try SocketAddress(ipAddress: "192.0.2.1", port: 700),
            localAddress: nil,
            transport: .udp,
            logger: Logger(label: "t")
        )
        guard case .success(var result) = portmapper.handle(context, arguments: &arguments) else {
            Issue.record("SET not answered")
            return
        }
        #expect(try result.readXDRBool() == false)
        #expect(portmapper.port(program: 4242, version: 1, transport: .tcp) == 0)
    }
}

/// SET/UNSET with owners, as rpcbind.
@Suite struct PortmapperOwnershipTests {
    static func mapping(_ program: UInt32, _ version: UInt32, _ prot: UInt32, _ port: UInt32 = 0) -> ByteBuffer {
        xdrEncoded(PortmapperMapping(program: program, version: version, protocolNumber: prot, port: port))
    }

    /// Callers told apart by source port: below 1024 root, 41000/41001 two users, others unknown.
    static func identify(_ call: RPCCallContext) -> PortmapperOwner {
        switch call.remotePort {
        case ..<1024: return .superuser
        case 41000: return .user(uid: 1000)
        case 41001: return .user(uid: 1001)
        default: return .unknown
        }
    }

    static func change(
        _ portmapper: BuiltinPortmapper, _ procedure: Portmapper.Procedure, from port: Int, _ arguments: ByteBuffer
    ) throws -> Bool {
        var arguments = arguments
        let context = RPCCallContext(
            xid: 1, program: 100000, version: 2, procedure: procedure.rawValue, credential: .none,
            remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: port), localAddress: nil, transport: .udp,
            logger: Logger(label: "t"))
        guard case .success(var result) = portmapper.handle(context, arguments: &arguments) else {
            throw HarnessFailure("\(procedure) not answered SUCCESS")
        }
        return try result.readXDRBool()
    }

    /// glibc's setfsuid (sys/fsuid.h, not in the Glibc module): per thread on Linux.
    static func setfsuid(_ uid: UInt32) -> Int32 {
        typealias Function = @convention(c) (UInt32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setfsuid") else { return -1 }
        return unsafeBitCast(symbol, to: Function.self)(uid)
    }

    struct HarnessFailure: Error { var text: String; init(_ text: String) { self.text = text } }

    @Test func onlyTheOwnerOrRootRemovesAMappingAndNobodyTheServers() throws {
        let portmapper = BuiltinPortmapper(
            registrations: [RPCRegistration(program: 100003, version: 3, transport: .tcp, port: 2049)],
            identifyCaller: Self.identify)
        let root = 700, alice = 41000, bob = 41001, stranger = 50000
        // The server's own mappings: no caller unsets or replaces them, root included.
        for caller in [alice, bob, stranger, root] {
            #expect(try !Self.change(portmapper, .unset, from: caller, Self.mapping(100003, 3, 6)))
            #expect(try !Self.change(portmapper, .set, from: caller, Self.mapping(100003, 3, 6, 5555)))
            #expect(try !Self.change(portmapper, .unset, from: caller, Self.mapping(100000, 2, 0)))
        }
        #expect(portmapper.port(program: 100003, version: 3, transport: .tcp) == 2049)
        #expect(portmapper.owner(program: 100003, version: 3, transport: .tcp) == .server)

        // A user's mapping: only that user or root removes it.
        #expect(try Self.change(portmapper, .set, from: alice, Self.mapping(4242, 1, 6, 999)))
        #expect(portmapper.owner(program: 4242, version: 1, transport: .tcp) == .user(uid: 1000))
        #expect(try !Self.change(portmapper, .unset, from: bob, Self.mapping(4242, 1, 0)))
        #expect(try !Self.change(portmapper, .unset, from: stranger, Self.mapping(4242, 1, 0)))
        #expect(portmapper.port(program: 4242, version: 1, transport: .tcp) == 999)
        #expect(try Self.change(portmapper, .unset, from: alice, Self.mapping(4242, 1, 0)))
        #expect(portmapper.port(program: 4242, version: 1, transport: .tcp) == 0)
        #expect(try Self.change(portmapper, .set, from: alice, Self.mapping(4243, 1, 17, 998)))
        #expect(try Self.change(portmapper, .unset, from: root, Self.mapping(4243, 1, 0)))

        // UNSET covers every transport: refused when one of them is someone else's.
        #expect(try Self.change(portmapper, .set, from: alice, Self.mapping(4244, 1, 6, 997)))
        #expect(try Self.change(portmapper, .set, from: bob, Self.mapping(4244, 1, 17, 996)))
        #expect(try !Self.change(portmapper, .unset, from: alice, Self.mapping(4244, 1, 0)))
        #expect(portmapper.port(program: 4244, version: 1, transport: .tcp) == 997)
        #expect(portmapper.port(program: 4244, version: 1, transport: .udp) == 996)

        // Unidentified callers may add; only root removes what they added.
        #expect(try Self.change(portmapper, .set, from: stranger, Self.mapping(4245, 1, 6, 995)))
        #expect(portmapper.owner(program: 4245, version: 1, transport: .tcp) == .unknown)
        #expect(try !Self.change(portmapper, .unset, from: stranger, Self.mapping(4245, 1, 0)))
        #expect(try !Self.change(portmapper, .unset, from: alice, Self.mapping(4245, 1, 0)))
        #expect(try Self.change(portmapper, .unset, from: root, Self.mapping(4245, 1, 0)))

        // Root's mapping is not a user's to remove.
        #expect(try Self.change(portmapper, .set, from: root, Self.mapping(4246, 1, 6, 994)))
        #expect(try !Self.change(portmapper, .unset, from: alice, Self.mapping(4246, 1, 0)))
    }

    /// On the wire, with the caller known the real way: an unprivileged source port, and a
    /// socket created with fsuid 65534 (the uid Linux lists for it in /proc/net).
    @Test(.enabled(if: getuid() == 0), arguments: RPCTransport.allCases)
    func unprivilegedLocalUserCannotRedirectTheServersPrograms(transport: RPCTransport) async throws {
        let portmapper = BuiltinPortmapper(
            registrations: [
                RPCRegistration(program: 100003, version: 3, transport: .tcp, port: 2049),
                RPCRegistration(program: 100003, version: 3, transport: .udp, port: 2049),
            ],
            port: 111)
        try await withTestServer(programs: [portmapper]) { server in
            /// A client whose socket belongs to `uid` (setfsuid is per thread on Linux).
            func client(uid: UInt32) async throws -> RPCClient {
                try await onThread {
                    let previous = Self.setfsuid(uid)
                    defer { _ = Self.setfsuid(UInt32(previous)) }
                    return Result { try server.client(transport) }
                }.get()
            }
            func call(
                _ client: RPCClient, _ procedure: Portmapper.Procedure, _ arguments: ByteBuffer
            ) async throws -> Bool {
                var reply = try await onThread {
                    Result {
                        try client.call(
                            program: 100000, version: 2, procedure: procedure.rawValue, arguments: arguments)
                    }
                }.get()
                try #require(reply.status == .success)
                return try reply.body.readXDRBool()
            }
            let nobody = try await client(uid: 65534)
            let other = try await client(uid: 65533)
            #expect(nobody.localPort >= 1024)

            #expect(try await !call(nobody, .unset, Self.mapping(100003, 3, 0)))
            #expect(try await !call(nobody, .set, Self.mapping(100003, 3, 6, UInt32(nobody.localPort))))
            #expect(portmapper.port(program: 100003, version: 3, transport: .tcp) == 2049)
            #expect(portmapper.port(program: 100003, version: 3, transport: .udp) == 2049)

            #expect(try await call(nobody, .set, Self.mapping(0x2000_0100, 1, 6, 4000)))
            #expect(portmapper.owner(program: 0x2000_0100, version: 1, transport: .tcp) == .user(uid: 65534))
            #expect(try await !call(other, .unset, Self.mapping(0x2000_0100, 1, 0)))
            #expect(try await call(nobody, .unset, Self.mapping(0x2000_0100, 1, 0)))
            nobody.close()
            other.close()
        }
    }
}

/// Tests that need port 111 or rpcbind: each runs in its own network and mount namespace.
@Suite(
    .serialized,
    .enabled(
        if: TestNamespace.isAvailable && FileManager.default.isExecutableFile(atPath: "/usr/sbin/rpcbind")
            && FileManager.default.isExecutableFile(atPath: "/usr/sbin/rpcinfo")
    )
)
struct PortmapperNamespaceTests {
    static let logger: Logger = {
        var logger = Logger(label: "test.portmapper")
        logger.logLevel = .warning
        return logger
    }()

    /// Starts rpcbind in the current thread's namespaces and waits (bounded) until it answers.
    static func startRPCBind() throws -> Subprocess {
        let daemon = try Subprocess(["/usr/sbin/rpcbind", "-f"])
        let deadline = Date(timeIntervalSinceNow: 10)
        while Date() < deadline {
            if SystemRPCBind.isRunning(timeout: .milliseconds(200)) { return daemon }
            usleep(50_000)
        }
        daemon.terminate(grace: 5)
        throw TestNamespace.Failure(description: "rpcbind did not answer within 10 s")
    }

    /// rpcinfo (libtirpc) as an independent client: `-n PORT` skips the port lookup (it still
    /// needs a portmapper on 111 to resolve the host).
    static func rpcinfoChecksStatuses(port: Int) throws -> [String] {
        var problems: [String] = []
        let port = "\(port)"
        let program = "\(TestProgram.number)"
        for (flag, version) in [("-t", "1"), ("-u", "2")] {
            let result = try run("/usr/sbin/rpcinfo", ["-n", port, flag, "127.0.0.1", program, version])
            if result.status != 0 || !result.output.contains("ready and waiting") {
                problems.append("rpcinfo -n \(flag) v\(version): \(result.output)")
            }
        }
        // Version 5 → PROG_MISMATCH.
        let mismatch = try run("/usr/sbin/rpcinfo", ["-n", port, "-t", "127.0.0.1", program, "5"])
        if mismatch.status == 0 || !mismatch.output.contains("version 5 is not available") {
            problems.append("rpcinfo version 5: \(mismatch.output)")
        }
        // Without a version rpcinfo walks PROG_MISMATCH low...high.
        let all = try run("/usr/sbin/rpcinfo", ["-n", port, "-t", "127.0.0.1", program])
        if !all.output.contains("version 1 ready and waiting") || !all.output.contains("version 2 ready and waiting") {
            problems.append("rpcinfo all versions: \(all.output)")
        }
        // A program the portmapper maps to our server, which does not serve it → PROG_UNAVAIL.
        let unknown = try run("/usr/sbin/rpcinfo", ["-n", port, "-u", "127.0.0.1", "536871170", "1"])
        if unknown.status == 0 || !unknown.output.lowercased().contains("program unavailable") {
            problems.append("rpcinfo unknown program: \(unknown.output)")
        }
        debugLog("rpcinfo outputs: \(mismatch.output) | \(all.output) | \(unknown.output)")
        return problems
    }

    @Test func systemRegistrationIsVisibleToRpcinfoAndRemovedOnUnregister() async throws {
        let outcome = try await withLoopsAndPool { group, pool in
            let server = RPCServer(programs: [TestProgram()], group: group, threadPool: pool, logger: Self.logger)
            let problems = try await TestNamespace.run { () throws -> [String] in
                var problems: [String] = []
                debugLog("starting rpcbind")
                let rpcbind = try Self.startRPCBind()
                debugLog("rpcbind up")
                defer { rpcbind.terminate(grace: 5) }
                let port = try server.bindBlocking(host: "127.0.0.1", port: 0)
                if resolvePortmapperMode(.auto, logger: Self.logger) != .system {
                    problems.append("auto did not resolve to system with rpcbind running")
                }
                let registrations = server.registrations()
                if registrations.count != 4 { problems.append("registrations: \(registrations)") }
                debugLog("registering")
                try SystemRPCBind.register(registrations)
                debugLog("registered")

                debugLog("rpcinfo -p")
                let listing = try run("/usr/sbin/rpcinfo", ["-p", "127.0.0.1"])
                debugLog("rpcinfo -p done")
                for (version, proto) in [("1", "tcp"), ("2", "tcp"), ("1", "udp"), ("2", "udp")] {
                    let line = listing.output.split(separator: "\n").contains {
                        $0.split(separator: " ", omittingEmptySubsequences: true) == [
                            "\(TestProgram.number)", Substring(version), Substring(proto), "\(port)",
                        ]
                    }
                    if !line { problems.append("rpcinfo -p lacks v\(version) \(proto) \(port): \(listing.output)") }
                }
                // rpcinfo asks rpcbind for the port, then calls NULL on our server.
                for flag in ["-t", "-u"] {
                    let ping = try run("/usr/sbin/rpcinfo", [flag, "127.0.0.1", "\(TestProgram.number)", "1"])
                    if !ping.output.contains("ready and waiting") {
                        problems.append("rpcinfo \(flag): \(ping.output)")
                    }
                }

                debugLog("unregistering")
                SystemRPCBind.unregister(registrations)
                debugLog("unregistered")
                let after = try run("/usr/sbin/rpcinfo", ["-p", "127.0.0.1"])
                if after.output.contains("\(TestProgram.number)") {
                    problems.append("still registered after unregister: \(after.output)")
                }
                if !after.output.contains("portmapper") { problems.append("rpcbind listing broken: \(after.output)") }
                debugLog("stopping rpcbind")
                return problems
            }
            try await server.shutdown()
            return problems
        }
        #expect(outcome == [])
    }

    @Test func builtinPortmapperOnPort111AnswersRpcinfo() async throws {
        let outcome = try await withLoopsAndPool { group, pool in
            let portmapper = BuiltinPortmapper()
            let portmapperServer = RPCServer(
                programs: [portmapper], group: group, threadPool: pool, logger: Self.logger)
            let server = RPCServer(programs: [TestProgram()], group: group, threadPool: pool, logger: Self.logger)
            let problems = try await TestNamespace.run { () throws -> [String] in
                var problems: [String] = []
                let mode = resolvePortmapperMode(.auto, probeTimeout: .milliseconds(300), logger: Self.logger)
                if mode != .builtin { problems.append("auto resolved to \(mode) in an empty namespace") }
                let port = try server.bindBlocking(host: "127.0.0.1", port: 0)
                portmapper.register(server.registrations())
                portmapper.register([RPCRegistration(program: 536871170, version: 1, transport: .udp, port: port)])
                _ = try portmapperServer.bindBlocking(host: "127.0.0.1", port: 111)

                let listing = try run("/usr/sbin/rpcinfo", ["-p", "127.0.0.1"])
                let rows = listing.output.split(separator: "\n").map {
                    $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                }
                for expected in [
                    ["100000", "2", "tcp", "111", "portmapper"], ["100000", "2", "udp", "111", "portmapper"],
                    ["\(TestProgram.number)", "1", "tcp", "\(port)"], ["\(TestProgram.number)", "2", "udp", "\(port)"],
                ] where !rows.contains(where: { Array($0.prefix(expected.count)) == expected }) {
                    problems.append("rpcinfo -p lacks \(expected): \(listing.output)")
                }
                for flag in ["-t", "-u"] {
                    let ping = try run("/usr/sbin/rpcinfo", [flag, "127.0.0.1", "\(TestProgram.number)", "2"])
                    if !ping.output.contains("ready and waiting") {
                        problems.append("rpcinfo \(flag) through the builtin portmapper: \(ping.output)")
                    }
                }
                if !SystemRPCBind.isRunning(timeout: .seconds(1)) {
                    problems.append("our own portmapper does not answer a NULL call")
                }
                problems += try Self.rpcinfoChecksStatuses(port: port)
                return problems
            }
            try await portmapperServer.shutdown()
            try await server.shutdown()
            return problems
        }
        #expect(outcome == [])
    }

    /// A server bound to the wildcard address answers UDP from the address the client sent to
    /// (a connected UDP client accepts nothing else), and tells handlers which local address a
    /// call came to.
    @Test func localAddressOfCallsToAWildcardSocket() async throws {
        let locals = try await withLoopsAndPool { group, pool in
            let server = RPCServer(programs: [TestProgram()], group: group, threadPool: pool, logger: Self.logger)
            let locals = try await TestNamespace.run { () throws -> [String] in
                // A second address, as on a multi-homed server.
                let added = try run("/usr/sbin/ip", ["addr", "add", "127.0.0.3/8", "dev", "lo"])
                guard added.status == 0 else { throw TestNamespace.Failure(description: added.output) }
                let port = try server.bindBlocking(host: "0.0.0.0", port: 0)
                var locals: [String] = []
                for transport in RPCTransport.allCases {
                    let client = try RPCClient(
                        host: "127.0.0.3",
                        port: port,
                        transport: transport,
                        credential: .sys(AuthSysParameters(machineName: "m", uid: 1, gid: 1))
                    )
                    var reply = try client.call(program: TestProgram.number, version: 1, procedure: 5)
                    _ = try reply.body.readXDRUInt32()
                    _ = try reply.body.readXDRUInt32()
                    _ = try reply.body.readXDRArray(maxCount: 16) { (b) throws(XDRError) in try b.readXDRUInt32() }
                    _ = try reply.body.readXDRString(maxLength: 255)
                    _ = try reply.body.readXDRString(maxLength: 255)
                    _ = try reply.body.readXDRUInt32()
                    let ip = try reply.body.readXDRString(maxLength: 255)
                    let localPort = try reply.body.readXDRUInt32()
                    locals.append("\(transport) \(ip) \(localPort == port ? "same port" : "port \(localPort)")")
                }
                return locals
            }
            try await server.shutdown()
            return locals
        }
        #expect(locals == ["tcp 127.0.0.3 same port", "udp 127.0.0.3 same port"])
    }

    @Test func registerWithoutRPCBindFailsNamingTheMapping() async throws {
        let error = try await TestNamespace.run { () -> String? in
            do {
                try SystemRPCBind.register([RPCRegistration(program: 4242, version: 1, transport: .tcp, port: 2049)])
                return nil
            } catch {
                return "\(error)"
            }
        }
        let text = try #require(error)
        #expect(text.contains("4242 v1 tcp port 2049"))
        #expect(text.contains("rpcbind"))
    }

    @Test func autoResolvesToOffWhenPort111IsHeldBySomethingSilent() async throws {
        let mode = try await TestNamespace.run { () throws -> PortmapperMode in
            // Something holds 111 on TCP and UDP but does not speak RPC.
            let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer {
                close(tcp)
                close(udp)
            }
            for fd in [tcp, udp] {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(111).bigEndian
                address.sin_addr.s_addr = in_addr_t(0)
                let rc = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                guard rc == 0 else { throw TestNamespace.Failure(description: "bind 111: \(errno)") }
            }
            // Listening but never accepting: the TCP probe connects and times out.
            listen(tcp, 1)
            return resolvePortmapperMode(
                .auto,
                probeTimeout: .milliseconds(300),
                nfsPort: 2049,
                mountPort: 20048,
                logger: Self.logger
            )
        }
        #expect(mode == .off)
    }
}

/// A one-thread event loop group and a two-thread pool for `body`, shut down afterwards.
func withLoopsAndPool<T>(_ body: (MultiThreadedEventLoopGroup, NIOThreadPool) async throws -> T) async throws -> T {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let pool = NIOThreadPool(numberOfThreads: 2)
    pool.start()
    return try await stoppingAfterwards(group: group, pool: pool) { try await body(group, pool) }
}

/// Runs `body`, then shuts down `pool` and `group` whatever happened.
func stoppingAfterwards<T>(
    group: MultiThreadedEventLoopGroup,
    pool: NIOThreadPool,
    _ body: () async throws -> T
) async throws -> T {
    do {
        let result = try await body()
        try await pool.shutdownGracefully()
        try await group.shutdownGracefully()
        return result
    } catch {
        try? await pool.shutdownGracefully()
        try? await group.shutdownGracefully()
        throw error
    }
}
