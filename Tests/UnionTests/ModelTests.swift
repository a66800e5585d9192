import Foundation
import Glibc
import Testing

@testable import Union

/// Random union operations against a small in-memory model of the merged tree.
@Suite struct ModelTests {
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state &+= 0x9e37_79b9_7f4a_7c15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    struct Model {
        var files: [String: String] = [:]
        var dirs: Set<String> = [""]
        var fileids: [String: UInt64] = [:]

        func exists(_ p: String) -> Bool { self.files[p] != nil || self.dirs.contains(p) }
        func children(_ d: String) -> [String] {
            let prefix = d.isEmpty ? "" : d + "/"
            return (Array(self.files.keys) + Array(self.dirs)).filter {
                $0 != d && $0.hasPrefix(prefix) && !$0.dropFirst(prefix.count).contains("/")
            }
        }
        mutating func move(_ from: String, _ to: String) {
            func re(_ p: String) -> String? {
                if p == from { return to }
                if p.hasPrefix(from + "/") { return to + p.dropFirst(from.count) }
                return nil
            }
            var nf: [String: String] = [:]
            for (k, v) in self.files { nf[re(k) ?? k] = v }
            self.files = nf
            self.dirs = Set(self.dirs.map { re($0) ?? $0 })
            var ni: [String: UInt64] = [:]
            for (k, v) in self.fileids { ni[re(k) ?? k] = v }
            self.fileids = ni
        }
    }

    static func join(_ d: String, _ n: String) -> String { d.isEmpty ? n : d + "/" + n }

    static func snapshot(_ u: UnionNamespace, _ model: inout Model, check: Bool) throws {
        var files: [String: String] = [:]
        var dirs: Set<String> = [""]
        var ids: [String: UInt64] = [:]
        var queue = [""]
        while let d = queue.popLast() {
            for e in try u.readdir(u.h(d), after: 0, as: root).entries {
                let p = Self.join(d, String(decoding: e.name, as: UTF8.self))
                let a = try u.walk(p).1
                ids[p] = a.fileid
                #expect(a.fileid == e.fileid, "\(p): listing fileid")
                if a.type == .directory {
                    dirs.insert(p)
                    queue.append(p)
                } else {
                    files[p] = try u.contents(p)
                }
            }
        }
        if check {
            #expect(files == model.files)
            #expect(dirs == model.dirs)
            for (p, id) in model.fileids where ids[p] != nil {
                #expect(ids[p] == id, "fileid of \(p) changed")
            }
        }
        model.files = files
        model.dirs = dirs
        for (p, id) in ids where model.fileids[p] == nil { model.fileids[p] = id }
        model.fileids = model.fileids.filter { ids[$0.key] != nil }
    }

    /// Seeds 1–3 always; one random seed (printed), or `UNION_MODEL_SEEDS=s1,s2,...` to replay.
    static let seeds: [UInt64] = {
        if let env = ProcessInfo.processInfo.environment["UNION_MODEL_SEEDS"] {
            return env.split(separator: ",").compactMap { UInt64($0) }
        }
        return [1, 2, 3, UInt64.random(in: 4...UInt64.max)]
    }()

    @Test(arguments: Self.seeds)
    func randomOperationsMatchModel(seed: UInt64) throws {
        print("ModelTests seed: \(seed)")
        var rng = SplitMix(state: seed)
        let f = Fixture()
        let names = ["a", "b", "c", "d"]
        // Random lower layers.
        for layer in 0..<2 {
            for _ in 0..<12 {
                let depth = Int.random(in: 1...3, using: &rng)
                let parts = (0..<depth).map { _ in names.randomElement(using: &rng)! }
                let p = f.lower(layer) + "/" + parts.joined(separator: "/")
                if Bool.random(using: &rng) { f.file(p, "L\(layer)-\(parts.joined())") } else { f.mkdir(p) }
            }
        }
        f.mkdir(f.lower(0))
        f.mkdir(f.lower(1))
        let cache = seed % 2 == 0 ? 256 : 0  // odd seeds run without the node cache
        var u = try f.open(lowers: 2, cachedObjects: cache)
        var model = Model()
        try Self.snapshot(u, &model, check: false)
        for step in 0..<150 {
            let dirs = model.dirs.sorted()
            let all = (Array(model.files.keys) + dirs.filter { !$0.isEmpty }).sorted()
            let dir = dirs.randomElement(using: &rng)!
            let name = names.randomElement(using: &rng)!
            let path = Self.join(dir, name)
            let op = Int.random(in: 0..<8, using: &rng)
            var expected: UnionError?
            var result: UnionError?
            func run(_ body: () throws -> Void) {
                do { try body() } catch let e as UnionError { result = e } catch { result = .notSupported("\(error)") }
            }
            switch op {
            case 0:  // create
                if model.exists(path) { expected = .exists } else { model.files[path] = "" }
                run { try u.mkfile(dir, name) }
            case 1:  // mkdir
                if model.exists(path) { expected = .exists } else { model.dirs.insert(path) }
                run { _ = try u.mkdir(in: u.h(dir), b(name), attributes: .init(), as: root) }
            case 2:  // write
                guard let target = model.files.keys.sorted().randomElement(using: &rng) else { continue }
                let text = "w\(step)"
                let old = model.files[target]!
                model.files[target] = text + old.dropFirst(min(old.count, text.count))
                run { try u.put(target, text) }
            case 3:  // remove
                if model.files[path] != nil {
                    model.files[path] = nil
                    model.fileids[path] = nil
                } else if model.dirs.contains(path) { expected = .isDirectory } else { expected = .noEntry }
                run { try u.remove(in: u.h(dir), b(name), as: root) }
            case 4:  // rmdir
                if model.dirs.contains(path) {
                    if model.children(path).isEmpty {
                        model.dirs.remove(path)
                        model.fileids[path] = nil
                    } else { expected = .notEmpty }
                } else if model.files[path] != nil { expected = .notDirectory } else { expected = .noEntry }
                run { try u.rmdir(in: u.h(dir), b(name), as: root) }
            case 5, 6:  // rename
                guard let src = all.randomElement(using: &rng) else { continue }
                let srcDir = String(src.split(separator: "/").dropLast().joined(separator: "/"))
                let srcName = String(src.split(separator: "/").last!)
                let srcIsDir = model.dirs.contains(src)
                if src == path {
                } else if srcIsDir && (path.hasPrefix(src + "/") || dir == src) {
                    expected = .invalid("cannot move a directory into itself")
                } else if model.exists(path) {
                    let dstIsDir = model.dirs.contains(path)
                    if srcIsDir && !dstIsDir { expected = .notDirectory }
                    else if !srcIsDir && dstIsDir { expected = .isDirectory }
                    else if dstIsDir && !model.children(path).isEmpty { expected = .notEmpty }
                    else {
                        model.files[path] = nil
                        model.dirs.remove(path)
                        model.fileids[path] = nil
                        model.move(src, path)
                    }
                } else {
                    model.move(src, path)
                }
                run { try u.rename(from: u.h(srcDir), b(srcName), to: u.h(dir), b(name), as: root) }
            default:  // reopen
                u.close()
                u = try f.open(lowers: 2, cachedObjects: cache)
            }
            #expect(result == expected, "seed \(seed) step \(step) op \(op) path \(path)")
            try Self.snapshot(u, &model, check: true)
            if result != expected { return }
        }
    }
}
