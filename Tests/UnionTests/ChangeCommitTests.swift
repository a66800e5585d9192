import Foundation
import Glibc
import Synchronization
import TestSupport
import Testing

@testable import Union

/// Namespace changes under group commit: attributes taken with the change, no lock across a flush or a data copy,
/// and simulated crashes at random moments of concurrent changes.
@Suite struct ChangeCommitTests {
    /// Each MKDIR's before/after attributes of the parent bracket exactly its own change: nlink goes up by one, and
    /// no two changes saw the same "before".
    @Test func directoryAttributesBracketExactlyOneChangeUnderConcurrentWriters() async throws {
        let f = Fixture()
        let u = try f.open()
        _ = try u.mkdir(in: u.rootHandle, b("d"), attributes: .init(), as: root)
        let d = try u.h("d")
        let results = await withTaskGroup(of: [ChangeResult].self) { g in
            for t in 0..<8 {
                g.addTask {
                    (0..<16).compactMap { i in
                        try? u.mkdirChange(in: d, b("t\(t)-\(i)"), attributes: .init(), as: root)
                    }
                }
            }
            var all: [ChangeResult] = []
            for await r in g { all += r }
            return all
        }
        #expect(results.count == 128)
        var befores: [UInt32] = []
        for r in results {
            let before = try #require(r.directory?.before), after = try #require(r.directory?.after)
            #expect(after.nlink == before.nlink + 1)
            #expect(after.ctime.seconds >= before.ctime.seconds)
            #expect(before.fileid == after.fileid)
            befores.append(before.nlink)
        }
        #expect(befores.sorted() == Array(2..<130).map { UInt32($0) })
        // REMOVE, RENAME and SETATTR report theirs the same way.
        let c = try u.createChange(in: d, b("file"), mode: .guarded, attributes: .init(), as: root)
        #expect(c.directory?.after?.mtime != nil)
        let rm = try u.rmdirChange(in: d, b("t0-0"), as: root)
        #expect(rm.directory?.after?.nlink == (rm.directory?.before?.nlink ?? 0) - 1)
        let mv = try u.renameChange(from: d, b("t0-1"), to: u.rootHandle, b("moved"), as: root)
        #expect(mv.directory?.after?.nlink == (mv.directory?.before?.nlink ?? 0) - 1)
        #expect(mv.toDirectory?.after?.nlink == (mv.toDirectory?.before?.nlink ?? 0) + 1)
        let sa = try u.setattrChange(try #require(c.handle), SetAttributes(mode: 0o600), guardCtime: nil, as: root)
        #expect(sa.object?.before?.mode == 0o644)
        #expect(sa.object?.after?.mode == 0o600)
    }

    /// While a flush is held, changes in other directories still make their change (the namespace lock is not held
    /// across a flush) and then share the next flush.
    @Test func changesDoNotWaitForAFlushUnderTheLockAndShareTheNextOne() async throws {
        let f = Fixture()
        let u = try f.open()
        for i in 0..<16 { _ = try u.mkdir(in: u.rootHandle, b("d\(i)"), attributes: .init(), as: root) }
        let dirs = try (0..<16).map { try u.h("d\($0)") }
        let sidecar = u.identities.sidecar
        let (entered, release) = holdFirstFlush(sidecar)
        let first = Worker { try u.create(in: dirs[0], b("first"), mode: .guarded, attributes: .init(), as: root) }
        #expect(entered.wait(timeout: .now() + 20) == .success)
        let flushesBefore = sidecar.commits.flushes
        let others = (1..<16).map { i in
            Worker { try u.create(in: dirs[i], b("f"), mode: .guarded, attributes: .init(), as: root) }
        }
        // All 15 changes are made while the first flush is still held.
        #expect(eventually { (1..<16).allSatisfy { f.exists(f.upper + "/tree/d\($0)/f") } })
        release.signal()
        _ = try first.join()
        for o in others { _ = try o.join() }
        #expect(
            sidecar.commits.flushes - flushesBefore <= 2, "15 changes made during one flush took more than one more")
        sidecar.beforeFlush.withLock { $0 = nil }
        u.close()
        let again = try f.open()
        for i in 1..<16 { #expect(try again.names("d\(i)") == ["f"]) }
    }

    /// A copy-up's data copy holds no namespace lock: a CREATE and a RENAME of the same namespace finish meanwhile.
    @Test func changesProceedWhileACopyUpCopiesData() async throws {
        let f = Fixture()
        f.file(f.lower(0) + "/big", "lower data")
        f.file(f.lower(0) + "/other", "other")
        let u = try f.open()
        let big = try u.h("big")
        let copying = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        u.hooks?.whileCopying.withLock {
            $0 = {
                copying.signal(); _ = release.wait(timeout: .now() + 30)
            }
        }
        let writer = Worker {
            try [UInt8](b("W")).withUnsafeBytes { try u.write(big, offset: 0, data: $0, stable: .fileSync, as: root) }
        }
        #expect(copying.wait(timeout: .now() + 20) == .success)
        _ = try u.create(in: u.rootHandle, b("new"), mode: .guarded, attributes: .init(), as: root)
        try u.rename(from: u.rootHandle, b("new"), to: u.rootHandle, b("renamed"), as: root)
        _ = try u.setattr(try u.h("renamed"), SetAttributes(mode: 0o600), guardCtime: nil, as: root)
        u.hooks?.whileCopying.withLock { $0 = nil }
        release.signal()
        _ = try writer.join()
        #expect(try u.contents("big") == "Wower data")
        #expect(try u.names("") == ["big", "other", "renamed"])
    }

    /// SETATTR, LINK and RENAME of a lower file copy its data without the write lock too, exactly once.
    @Test func setattrLinkAndRenameCopyUpOutsideTheChange() throws {
        let f = Fixture()
        f.files(lower: 0, ["/a": "aaaa", "/b": "bbbb", "/c": "cccc"])
        let u = try f.open()
        let ids = try ["a", "b", "c"].map { try u.walk($0).1.fileid }
        let sawCopy = Count()
        u.hooks?.whileCopying.withLock { $0 = { sawCopy.add() } }
        _ = try u.setattr(try u.h("a"), SetAttributes(size: 2), guardCtime: nil, as: root)
        #expect(sawCopy.value == 1, "SETATTR")
        _ = try u.link(try u.h("b"), in: u.rootHandle, b("b2"), as: root)
        #expect(sawCopy.value == 2, "LINK")
        try u.rename(from: u.rootHandle, b("c"), to: u.rootHandle, b("c2"), as: root)
        #expect(sawCopy.value == 3)
        #expect(u.hooks?.copyUpCount.load(ordering: .relaxed) == 3)
        #expect(try u.contents("a") == "aa")
        #expect(try u.contents("b2") == "bbbb")
        #expect(try u.contents("c2") == "cccc")
        #expect(try [u.walk("a").1.fileid, u.walk("b2").1.fileid, u.walk("c2").1.fileid] == ids)
    }

    /// A rename whose identity record a crash lost: open finds the object at its new name (same fileid).
    @Test func openRepairsTheNameOfARenameCutShort() throws {
        let f = Fixture()
        let u = try f.open()
        try u.mkfile("", "a", "x")
        let (h, a) = try u.walk("a")
        u.close()
        // rename(2) reached the disk, its record not
        #expect(Glibc.rename(f.upper + "/tree/a", f.upper + "/tree/b") == 0)
        let again = try f.open()
        #expect(try again.walk("b").1.fileid == a.fileid)
        #expect(try again.getattr(h).fileid == a.fileid)
    }

    // MARK: - Simulated crashes at random moments of concurrent changes

    /// What one worker believes about its own names: the last acknowledged state.
    struct Model: Sendable {
        var files: [String: (fileid: UInt64, content: String)] = [:]
        var gone: Set<String> = []
        /// Names an operation was changing when the crash came: either state is right.
        var uncertain: Set<String> = []
    }

    /// 4 workers create, write FILE_SYNC, rename and remove their own names (upper-only and lower ones, so copy-ups and
    /// whiteouts happen) until a crash at a random moment; then a reopen must show every acknowledged change, nothing
    /// half-applied (work/ empty, every listed name resolves, fileids kept). 220 crash points.
    @Test func randomCrashesDuringConcurrentChangesLoseNothingAcknowledged() async throws {
        let f = Fixture(in: "/dev/shm")
        let workers = 4
        for w in 0..<workers {
            for k in 0..<6 { f.file(f.lower(0) + "/w\(w)/L\(k)", "lower \(w)-\(k)") }
        }
        var models = [Model](repeating: Model(), count: workers)
        var rng = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0...UInt64.max, using: &rng)
        var gen = SplitMix64(seed: seed)
        var crashes = 0
        var serial = 0
        // Lower names start out known.
        do {
            let u = try f.open()
            for w in 0..<workers {
                for k in 0..<6 {
                    let id = try u.walk("w\(w)/L\(k)").1.fileid
                    models[w].files["L\(k)"] = (id, "lower \(w)-\(k)")
                }
            }
            u.close()
        }
        for round in 0..<220 {
            let u = try f.open()
            try Self.check(u, f, models, seed: seed, round: round)
            Self.adopt(u, &models)
            let crashed = Flag()
            let acknowledged = Count()
            let crashAfter = Int(gen.next() % 10)
            let start = serial
            serial += 1000
            let shared = models
            let seeds = (0..<workers).map { _ in gen.next() }
            let tasks = (0..<workers).map { w in
                Worker { () -> Model in
                    var m = shared[w]
                    var g = SplitMix64(seed: seeds[w])
                    var n = start + w * 100
                    for _ in 0..<40 where !crashed.isSet {
                        n += 1
                        Self.step(u, w, &m, &g, n, crashed, acknowledged)
                    }
                    return m
                }
            }
            _ = eventually(10) { acknowledged.value >= crashAfter }
            crashed.set()
            u.identities.commits.abandon()
            u.close()
            for (w, t) in tasks.enumerated() { models[w] = try t.join() }
            crashes += 1
        }
        let u = try f.open()
        try Self.check(u, f, models, seed: seed, round: 220)
        #expect(crashes >= 200)
    }

    /// One random operation of worker `w` on its own names; the model changes only if it was acknowledged before the
    /// crash.
    static func step(
        _ u: UnionNamespace, _ w: Int, _ m: inout Model, _ g: inout SplitMix64, _ n: Int, _ crashed: Flag,
        _ acknowledged: Count
    ) {
        let existing = m.files.keys.sorted()
        let pick = existing.isEmpty ? nil : existing[Int(g.next() % UInt64(existing.count))]
        let dir = "w\(w)"
        func done(_ names: [String], _ ok: Bool, apply: (inout Model) -> Void) {
            if crashed.isSet {
                m.uncertain.formUnion(names)
            } else if ok {
                apply(&m)
                acknowledged.add()
            }
        }
        do {
            switch g.next() % 4 {
            case 0:
                let name = "n\(n)"
                let r = try u.create(in: u.h(dir), b(name), mode: .guarded, attributes: .init(), as: root)
                done([name], true) { $0.files[name] = (r.1.fileid, "") }
            case 1:
                guard let name = pick, let id = m.files[name]?.fileid else { return }
                let text = "v\(n)"
                try u.put(dir + "/" + name, text)
                let now = try u.contents(dir + "/" + name)  // the write overlays what was there
                done([name], true) { $0.files[name] = (id, now) }
            case 2:
                guard let name = pick, let old = m.files[name] else { return }
                let to = "r\(n)"
                try u.rename(from: u.h(dir), b(name), to: u.h(dir), b(to), as: root)
                done([name, to], true) {
                    $0.files[name] = nil
                    $0.gone.insert(name)
                    $0.files[to] = old
                }
            default:
                guard let name = pick else { return }
                try u.remove(in: u.h(dir), b(name), as: root)
                done([name], true) {
                    $0.files[name] = nil
                    $0.gone.insert(name)
                }
            }
        } catch {
            if !crashed.isSet {
                Issue.record("worker \(w) op \(n): \(error)")
            }
            // After the crash every change fails; what it touched is uncertain.
            if let pick { m.uncertain.insert(pick) }
            m.uncertain.insert("n\(n)")
            m.uncertain.insert("r\(n)")
        }
    }

    /// After a reopen: acknowledged state everywhere, nothing half-done; uncertain names adopt what is there.
    static func check(_ u: UnionNamespace, _ f: Fixture, _ models: [Model], seed: UInt64, round: Int) throws {
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: f.upper + "/work")
        #expect(leftovers.isEmpty, "seed \(seed) round \(round): work/ \(leftovers)")
        for (w, m) in models.enumerated() {
            let dir = "w\(w)"
            let listed = Set(try u.names(dir))
            for (name, want) in m.files where !m.uncertain.contains(name) {
                let got = try? u.walk(dir + "/" + name)
                #expect(got?.1.fileid == want.fileid, "seed \(seed) round \(round): \(dir)/\(name) fileid")
                #expect(
                    (try? u.contents(dir + "/" + name)) == want.content,
                    "seed \(seed) round \(round): \(dir)/\(name) content")
                #expect(listed.contains(name), "seed \(seed) round \(round): \(dir)/\(name) not listed")
            }
            for name in m.gone where !m.uncertain.contains(name) && m.files[name] == nil {
                #expect(!listed.contains(name), "seed \(seed) round \(round): removed \(dir)/\(name) came back")
            }
            // Every listed name resolves (no name without its records).
            for name in listed { #expect((try? u.walk(dir + "/" + name)) != nil, "\(dir)/\(name) listed, not found") }
        }
    }
}

extension ChangeCommitTests {
    /// Adopts, for uncertain names, whatever the reopened union shows (either state was right).
    static func adopt(_ u: UnionNamespace, _ models: inout [Model]) {
        for w in models.indices {
            for name in models[w].uncertain {
                let path = "w\(w)/" + name
                if let (_, a) = try? u.walk(path), let text = try? u.contents(path) {
                    models[w].files[name] = (a.fileid, text)
                    models[w].gone.remove(name)
                } else {
                    models[w].files[name] = nil
                    models[w].gone.insert(name)
                }
            }
            models[w].uncertain = []
        }
    }
}

/// A counter shared between threads.
final class Count: Sendable {
    private let v = Atomic<Int>(0)
    func add() { self.v.add(1, ordering: .relaxed) }
    var value: Int { self.v.load(ordering: .relaxed) }
}
