import Foundation
import Glibc
import TestSupport
import Testing

@testable import Union

/// Random union operations against a small in-memory model of the merged tree.
@Suite struct ModelTests {
    struct Model {
        /// path → inode (hard links share one); inode → content.
        var files: [String: Int] = [:]
        var data: [Int: String] = [:]
        var nextInode = 0
        var dirs: Set<String> = [""]
        var fileids: [String: UInt64] = [:]

        mutating func newInode(_ content: String) -> Int {
            self.nextInode += 1
            self.data[self.nextInode] = content
            return self.nextInode
        }

        var contents: [String: String] { self.files.mapValues { self.data[$0] ?? "?" } }

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
            var nf: [String: Int] = [:]
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
        var types: [String: FileType] = [:]
        var queue = [""]
        while let d = queue.popLast() {
            for e in try u.readdir(u.h(d), after: 0, as: root).entries {
                let p = Self.join(d, String(decoding: e.name, as: UTF8.self))
                let a = try u.walk(p).1
                ids[p] = a.fileid
                types[p] = a.type
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
            #expect(files == model.contents)
            #expect(dirs == model.dirs)
            for (p, id) in model.fileids where ids[p] != nil {
                #expect(ids[p] == id, "fileid of \(p) changed")
            }
            // Names of one model inode are one union object, and the other way round.
            for (p, ino) in model.files {
                for (q, ino2) in model.files where p < q {
                    #expect((ino == ino2) == (ids[p] == ids[q]), "\(p) and \(q): hard link identity")
                }
            }
            return
        }
        var byFileid: [UInt64: Int] = [:]
        model.files = [:]
        for (p, content) in files {
            let id = ids[p]!
            if let ino = byFileid[id] {
                model.files[p] = ino
            } else {
                let ino = model.newInode(content)
                byFileid[id] = ino
                model.files[p] = ino
            }
        }
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
        var rng = SplitMix64(seed: seed)
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
        // Hard links and OCI whiteouts in the lowers.
        for layer in 0..<2 {
            let existing = (FileManager.default.subpaths(atPath: f.lower(layer)) ?? []).sorted()
            let regular = existing.filter {
                var st = stat(); return lstat(f.lower(layer) + "/" + $0, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
            }
            if let src = regular.randomElement(using: &rng),
                let dst = existing.filter({ !regular.contains($0) }).randomElement(using: &rng)
            {
                link(f.lower(layer) + "/" + src, f.lower(layer) + "/" + dst + "/hl")
            }
        }
        if let victim = (FileManager.default.subpaths(atPath: f.lower(1)) ?? []).sorted().randomElement(using: &rng) {
            let parts = victim.split(separator: "/")
            let dir = parts.dropLast().joined(separator: "/")
            f.mkdir(f.lower(0) + "/" + dir)
            f.file(f.lower(0) + "/" + (dir.isEmpty ? "" : dir + "/") + ".wh." + parts.last!)
        }
        let cache = seed % 2 == 0 ? 256 : 0  // odd seeds run without the node cache
        var u = try f.open(lowers: 2, cachedObjects: cache)
        var model = Model()
        try Self.snapshot(u, &model, check: false)
        var succeeded = [Int](repeating: 0, count: 9)
        defer { print("ModelTests seed \(seed): successes per op \(succeeded)") }
        for step in 0..<100 {
            let dirs = model.dirs.sorted()
            let all = (Array(model.files.keys) + dirs.filter { !$0.isEmpty }).sorted()
            let dir = dirs.randomElement(using: &rng)!
            let name = names.randomElement(using: &rng)!
            let path = Self.join(dir, name)
            let op = Int.random(in: 0..<9, using: &rng)
            var expected: UnionError?
            var result: UnionError?
            func run(_ body: () throws -> Void) {
                do { try body() } catch let e as UnionError { result = e } catch { result = .notSupported("\(error)") }
            }
            switch op {
            case 0:  // create
                if model.exists(path) { expected = .exists } else { model.files[path] = model.newInode("") }
                run { try u.mkfile(dir, name) }
            case 1:  // mkdir
                if model.exists(path) { expected = .exists } else { model.dirs.insert(path) }
                run { _ = try u.mkdir(in: u.h(dir), b(name), attributes: .init(), as: root) }
            case 2:  // write
                guard let target = model.files.keys.sorted().randomElement(using: &rng) else { continue }
                let text = "w\(step)"
                let ino = model.files[target]!
                let old = model.data[ino]!
                model.data[ino] = text + old.dropFirst(min(old.count, text.count))
                run { try u.put(target, text) }
            case 3:  // remove
                if model.files[path] != nil {
                    model.files[path] = nil
                    model.fileids[path] = nil
                } else if model.dirs.contains(path) {
                    expected = .isDirectory
                } else {
                    expected = .noEntry
                }
                run { try u.remove(in: u.h(dir), b(name), as: root) }
            case 4:  // rmdir
                if model.dirs.contains(path) {
                    if model.children(path).isEmpty {
                        model.dirs.remove(path)
                        model.fileids[path] = nil
                    } else {
                        expected = .notEmpty
                    }
                } else if model.files[path] != nil {
                    expected = .notDirectory
                } else {
                    expected = .noEntry
                }
                run { try u.rmdir(in: u.h(dir), b(name), as: root) }
            case 5, 6:  // rename
                guard let src = all.randomElement(using: &rng) else { continue }
                let srcDir = String(src.split(separator: "/").dropLast().joined(separator: "/"))
                let srcName = String(src.split(separator: "/").last!)
                let srcIsDir = model.dirs.contains(src)
                if src == path || (model.files[src] != nil && model.files[src] == model.files[path]) {
                } else if srcIsDir && (path.hasPrefix(src + "/") || dir == src) {
                    expected = .invalid("cannot move a directory into itself")
                } else if model.exists(path) {
                    let dstIsDir = model.dirs.contains(path)
                    if srcIsDir && !dstIsDir {
                        expected = .notDirectory
                    } else if !srcIsDir && dstIsDir {
                        expected = .isDirectory
                    } else if dstIsDir && !model.children(path).isEmpty {
                        expected = .notEmpty
                    } else {
                        model.files[path] = nil
                        model.dirs.remove(path)
                        model.fileids[path] = nil
                        model.move(src, path)
                    }
                } else {
                    model.move(src, path)
                }
                run { try u.rename(from: u.h(srcDir), b(srcName), to: u.h(dir), b(name), as: root) }
            case 7:  // link
                guard let src = model.files.keys.sorted().randomElement(using: &rng) else { continue }
                if model.exists(path) { expected = .exists } else { model.files[path] = model.files[src] }
                run { _ = try u.link(u.h(src), in: u.h(dir), b(name), as: root) }
            default:  // reopen
                u.close()
                u = try f.open(lowers: 2, cachedObjects: cache)
            }
            #expect(result == expected, "seed \(seed) step \(step) op \(op) path \(path)")
            if result == nil { succeeded[op] += 1 }
            try Self.snapshot(u, &model, check: true)
            if result != expected { return }
        }
    }
}
