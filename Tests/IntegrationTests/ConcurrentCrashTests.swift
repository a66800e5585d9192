import Foundation
import NFS3
import NIOCore
import SunRPC
import TestSupport
import Testing
import XDR

/// SIGKILL at random moments while 32 clients create, write FILE_SYNC, rename and remove in several directories (their
/// own names, upper-only and lower ones): after each restart every change whose reply was received is there, nothing
/// half-applied is visible (every listed name resolves, work/ is empty, fileids are kept). `STRATA_CRASH_ROUNDS` sets
/// the number of kills (`scripts/crash-soak.sh` runs many).
@Suite(.serialized) struct ConcurrentCrashTests {
    static let clients = 32
    static let rounds = Int(ProcessInfo.processInfo.environment["STRATA_CRASH_ROUNDS"] ?? "") ?? 10

    struct Model: Sendable {
        var files: [String: (fileid: UInt64, content: String)] = [:]
        var gone: Set<String> = []
        var uncertain: Set<String> = []
    }

    /// Thread-safe counter of acknowledged changes.
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func add() { self.lock.lock(); self.value += 1; self.lock.unlock() }
        var count: Int { self.lock.lock(); defer { self.lock.unlock() }; return self.value }
    }

    @Test func acknowledgedChangesOf32ClientsSurviveSIGKILLs() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        for c in 0..<Self.clients {
            for k in 0..<2 { try directory.write("lower2/c\(c)/L\(k)", "lower \(c)-\(k)") }
        }
        let server = try ServerProcess(config: threeLayerConfig(), directory: directory)
        defer { server.stop() }
        let seed = UInt64.random(in: 0...UInt64.max)
        var models = [Model](repeating: Model(), count: Self.clients)
        do {
            let client = try NFSTestClient(server: server)
            for c in 0..<Self.clients {
                for k in 0..<2 {
                    let ok = try client.lookup("L\(k)", in: try client.handle("c\(c)")).get("LOOKUP")
                    models[c].files["L\(k)"] = (try #require(ok.objAttributes.attributes).fileid, "lower \(c)-\(k)")
                }
            }
        }
        var kills = 0
        for round in 0..<Self.rounds {
            let acknowledged = Counter()
            let killed = Flag()
            let snapshot = models
            let (nfsPort, mountPort) = (server.nfsPort, server.mountPort)
            let workers = (0..<Self.clients).map { c in
                ClientThread { () -> Model in
                    var m = snapshot[c]
                    var g = SplitMix64(seed: seed &+ UInt64(round * 1000 + c))
                    guard let client = try? NFSTestClient(nfsPort: nfsPort, mountPort: mountPort),
                        let dir = try? client.handle("c\(c)")
                    else {
                        return m
                    }
                    var n = round * 10_000
                    while !killed.isSet && n < round * 10_000 + 2_000 {
                        n += 1
                        Self.step(client, dir, &m, &g, n, killed, acknowledged)
                    }
                    return m
                }
            }
            // Kill once a random number of changes were acknowledged (bounded wait).
            var pick = SplitMix64(seed: seed &+ UInt64(round))
            let target = Int(pick.next() % 150) + 10
            let deadline = Date().addingTimeInterval(30)
            while acknowledged.count < target && Date() < deadline { usleep(2_000) }
            killed.set()
            server.crash()
            kills += 1
            for (c, w) in workers.enumerated() { models[c] = try w.join() }
            try server.restart()
            let checker = try NFSTestClient(server: server)
            try Self.check(checker, &models, seed: seed, round: round)
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: directory.file("upper/work"))) ?? []
            #expect(leftovers.isEmpty, "seed \(seed) round \(round): work/ after restart: \(leftovers)")
        }
        #expect(kills == Self.rounds)
    }

    static func step(
        _ client: NFSTestClient, _ dir: FileHandle3, _ m: inout Model, _ g: inout SplitMix64, _ n: Int, _ killed: Flag,
        _ acknowledged: Counter
    ) {
        let names = m.files.keys.sorted()
        let pick = names.isEmpty ? nil : names[Int(g.next() % UInt64(names.count))]
        var touched: [String] = []
        do {
            switch g.next() % 4 {
            case 0:
                let name = "n\(n)"
                touched = [name]
                let made = try client.create(name, in: dir, how: .guarded(SetAttributes3(mode: 0o644))).get("CREATE")
                let fileid =
                    try made.objAttributes.attributes?.fileid
                    ?? client.lookup(name, in: dir).get().objAttributes.attributes?.fileid
                m.files[name] = (fileid ?? 0, "")
            case 1:
                guard let name = pick, let id = m.files[name]?.fileid else { return }
                touched = [name]
                let text = "v\(n)"
                let file = try client.lookup(name, in: dir).get("LOOKUP").object
                _ = try client.write(file, Array(text.utf8), stable: .fileSync).get("WRITE")
                // The old content was shorter or longer: the model keeps what the file holds now.
                let now = String(decoding: try client.readAll(file), as: UTF8.self)
                m.files[name] = (id, now)
            case 2:
                guard let name = pick, let old = m.files[name] else { return }
                let to = "r\(n)"
                touched = [name, to]
                let args = Rename3Args(
                    from: DirOpArgs3(dir: dir, name: Array(name.utf8)), to: DirOpArgs3(dir: dir, name: Array(to.utf8)))
                _ = try client.call(.rename, args, as: Rename3Res.self).get("RENAME")
                m.files[name] = nil
                m.gone.insert(name)
                m.files[to] = old
            default:
                guard let name = pick else { return }
                touched = [name]
                _ = try client.remove(name, in: dir).get("REMOVE")
                m.files[name] = nil
                m.gone.insert(name)
            }
            if killed.isSet { m.uncertain.formUnion(touched) } else { acknowledged.add() }
        } catch {
            if !killed.isSet { Issue.record("change \(n): \(error)") }
            m.uncertain.formUnion(touched)
        }
    }

    /// Every acknowledged state is there; uncertain names adopt what the server shows.
    static func check(_ client: NFSTestClient, _ models: inout [Model], seed: UInt64, round: Int) throws {
        for c in models.indices {
            let dir = try client.handle("c\(c)")
            let listing = try client.readdir(dir, count: 1 << 20).get("READDIR")
            let listed = Set(listing.entries.map { String(decoding: $0.name, as: UTF8.self) }).subtracting([".", ".."])
            var m = models[c]
            for (name, want) in m.files where !m.uncertain.contains(name) {
                let ok = try #require(
                    client.lookup(name, in: dir).success,
                    "seed \(seed) round \(round): acknowledged c\(c)/\(name) is gone")
                #expect(
                    ok.objAttributes.attributes?.fileid == want.fileid,
                    "seed \(seed) round \(round): c\(c)/\(name) fileid")
                let text = String(decoding: try client.readAll(ok.object), as: UTF8.self)
                #expect(
                    text == want.content,
                    "seed \(seed) round \(round): c\(c)/\(name) content \(text) != \(want.content)")
            }
            for name in m.gone where !m.uncertain.contains(name) && m.files[name] == nil {
                #expect(!listed.contains(name), "seed \(seed) round \(round): removed c\(c)/\(name) came back")
            }
            for name in listed {
                #expect(
                    try client.lookup(name, in: dir).success != nil,
                    "seed \(seed) round \(round): c\(c)/\(name) listed but not found"
                )
            }
            for name in m.uncertain {
                if case .ok(let ok) = try client.lookup(name, in: dir) {
                    m.files[name] = (
                        ok.objAttributes.attributes?.fileid ?? 0,
                        String(decoding: try client.readAll(ok.object), as: UTF8.self)
                    )
                    m.gone.remove(name)
                } else {
                    m.files[name] = nil
                    m.gone.insert(name)
                }
            }
            m.uncertain = []
            models[c] = m
        }
    }
}

/// A flag shared between threads.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { self.lock.lock(); self.value = true; self.lock.unlock() }
    var isSet: Bool { self.lock.lock(); defer { self.lock.unlock() }; return self.value }
}

/// A body on its own thread (blocking RPCs do not belong on the cooperative pool).
final class ClientThread<T: Sendable>: @unchecked Sendable {
    private var result: Result<T, any Error>?
    private let done = DispatchSemaphore(value: 0)
    init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            self.result = Result { try body() }
            self.done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    func join(_ seconds: Double = 120) throws -> T {
        guard self.done.wait(timeout: .now() + seconds) == .success else { throw HarnessError("client thread hung") }
        return try self.result!.get()
    }
}
