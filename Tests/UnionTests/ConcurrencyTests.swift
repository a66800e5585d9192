import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct ConcurrencyTests {
    /// Readers, writers and namespace changes at once: no crash, no deadlock, a consistent end state.
    @Test func mixedOperationsFromManyThreads() async throws {
        let f = Fixture()
        for i in 0..<20 { f.file(f.lower(0) + "/d/f\(i)", "lower\(i)") }
        let u = try f.open()
        let dir = try u.h("d")
        await withTaskGroup(of: Void.self) { g in
            for t in 0..<6 {
                g.addTask {
                    for i in 0..<40 {
                        let name = b("t\(t)-\(i)")
                        switch (t + i) % 5 {
                        case 0: _ = try? u.create(in: dir, name, mode: .guarded, attributes: .init(), as: root)
                        case 1: _ = try? u.readdir(dir, after: 0, as: root)
                        case 2:
                            if let (h, _) = try? u.lookup(dir, b("f\(i % 20)"), as: root) {
                                _ = try? [UInt8](b("x")).withUnsafeBytes {
                                    try u.write(h, offset: UInt64(t), data: $0, stable: .unstable, as: root)
                                }
                                _ = try? u.read(h, offset: 0, count: 100, as: root)
                            }
                        case 3: _ = try? u.rename(from: dir, b("t\(t)-\(i - 3)"), to: dir, b("r\(t)-\(i)"), as: root)
                        default: _ = try? u.getattr(dir)
                        }
                    }
                }
            }
        }
        let names = try u.names("d")
        #expect(names.count == Set(names).count)
        #expect((0..<20).allSatisfy { names.contains("f\($0)") })
        let copies = try #require(u.hooks).copyUpCount.load(ordering: .relaxed)
        #expect(copies <= 21)  // at most once per lower file, plus the directory d
        u.close()
        let again = try f.open()
        #expect(try again.names("d") == names)
    }

    /// A steady stream of readers does not starve namespace changes (writer-preferring lock).
    @Test func readersDoNotStarveWriters() async throws {
        let f = Fixture()
        f.file(f.lower(0) + "/f", String(repeating: "r", count: 4096))
        let u = try f.open()
        let h = try u.h("f")
        let stop = Flag()
        let readers = (0..<4).map { _ in
            Task.detached {
                while !stop.isSet { _ = try? u.read(h, offset: 0, count: 4096, as: root) }
            }
        }
        let start = Date()
        for i in 0..<20 { try u.mkfile("", "w\(i)") }
        let elapsed = Date().timeIntervalSince(start)
        stop.set()
        for r in readers { await r.value }
        #expect(elapsed < 10, "20 creates took \(elapsed) s under read load")
    }

    /// The data copy of a copy-up for WRITE runs under the read lock: other calls proceed meanwhile.
    @Test func readsProceedWhileACopyUpCopies() async throws {
        let f = Fixture()
        f.file(f.lower(0) + "/big", "lower data")
        f.file(f.lower(0) + "/other", "other")
        let u = try f.open()
        let big = try u.h("big"), other = try u.h("other")
        let copying = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        u.hooks?.whileCopying.withLock {
            $0 = {
                copying.signal(); release.wait()
            }
        }
        let writer = Task.detached {
            try [UInt8](b("W")).withUnsafeBytes { try u.write(big, offset: 0, data: $0, stable: .fileSync, as: root) }
        }
        copying.wait()
        // Meanwhile: reads, lookups, listings of the same namespace.
        #expect(try u.read(other, offset: 0, count: 10, as: root).data == b("other"))
        #expect(try u.read(big, offset: 0, count: 10, as: root).data == b("lower data"))
        #expect(try u.names("") == ["big", "other"])
        u.hooks?.whileCopying.withLock { $0 = nil }
        release.signal()
        _ = try await writer.value
        #expect(try u.contents("big") == "Wower data")
        #expect(u.hooks?.copyUpCount.load(ordering: .relaxed) == 1)
    }

    /// First sightings from many threads share commits and still get one fileid per object.
    @Test func concurrentFirstSightingsGetOneFileidEach() async throws {
        let f = Fixture()
        for i in 0..<200 { f.file(f.lower(0) + "/d/f\(i)") }
        let u = try f.open()
        let d = try u.h("d")
        let results = await withTaskGroup(of: [(Int, UInt64)].self) { g in
            for t in 0..<8 {
                g.addTask {
                    // Every thread looks up every name, in a different order.
                    (0..<200).map { ($0 * 7 + t * 13) % 200 }.compactMap { i in
                        (try? u.lookup(d, b("f\(i)"), as: root)).map { (i, $0.1.fileid) }
                    }
                }
            }
            var all: [(Int, UInt64)] = []
            for await r in g { all += r }
            return all
        }
        #expect(results.count == 1600)
        var byName: [Int: Set<UInt64>] = [:]
        for (i, id) in results { byName[i, default: []].insert(id) }
        #expect(byName.values.allSatisfy { $0.count == 1 })
        let ids = byName.values.compactMap(\.first)
        #expect(Set(ids).count == 200)
        u.close()
        let again = try f.open()
        for i in 0..<200 { #expect(try again.walk("d/f\(i)").1.fileid == byName[i]?.first) }
    }
}
