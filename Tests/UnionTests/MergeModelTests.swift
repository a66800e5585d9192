import Foundation
import Glibc
import TestSupport
import Testing

@testable import Union

/// Random plain lowers with files, directories, OCI and overlayfs whiteouts and opaque markers; the union's view is
/// compared with a reference merge written directly from the union rules (Docs/SEMANTICS.md) over in-memory layers.
@Suite struct MergeModelTests {
    enum Entry: Equatable {
        case file(String)
        case dir(isOpaque: Bool)
        case whiteout  // overlayfs char 0/0
    }

    /// One layer: path → entry, plus OCI whiteouts (`.wh.NAME` files) by parent path.
    struct Layer {
        var entries: [String: Entry] = [:]
        var ociWhiteouts: [String: Set<String>] = [:]

        func children(_ dir: String) -> [String: Entry] {
            var out: [String: Entry] = [:]
            let prefix = dir.isEmpty ? "" : dir + "/"
            for (p, e) in self.entries where p.hasPrefix(prefix) && p != dir {
                let rest = p.dropFirst(prefix.count)
                if !rest.contains("/") { out[String(rest)] = e }
            }
            return out
        }

        func isWhiteout(_ dir: String, _ name: String) -> Bool {
            let p = dir.isEmpty ? name : dir + "/" + name
            return self.entries[p] == .whiteout || (self.ociWhiteouts[dir]?.contains(name) ?? false)
        }
    }

    /// The reference merge: path → "dir" or "file:<content>".
    static func reference(_ layers: [Layer]) -> [String: String] {
        var out: [String: String] = [:]
        func visit(_ dir: String, _ sources: [(layer: Int, path: String)]) {
            var seen: Set<String> = []
            var hidden: Set<String> = []
            var order: [String] = []
            var firstLayer: [String: Int] = [:]
            for (l, p) in sources {
                for (name, e) in layers[l].children(p) where e != .whiteout {
                    if seen.contains(name) || hidden.contains(name) { continue }
                    seen.insert(name)
                    order.append(name)
                    firstLayer[name] = l
                }
                for (name, e) in layers[l].children(p) where e == .whiteout { hidden.insert(name) }
                hidden.formUnion(layers[l].ociWhiteouts[p] ?? [])
            }
            for name in order {
                let path = dir.isEmpty ? name : dir + "/" + name
                let top = firstLayer[name]!
                let topPath = sources.first { $0.layer == top }!.path
                let topEntry = layers[top].entries[topPath.isEmpty ? name : topPath + "/" + name]!
                switch topEntry {
                case .file(let c): out[path] = "file:" + c
                case .whiteout: break
                case .dir:
                    out[path] = "dir"
                    var childSources: [(layer: Int, path: String)] = []
                    for (l, p) in sources where l >= top {
                        let cp = p.isEmpty ? name : p + "/" + name
                        guard let e = layers[l].entries[cp] else {
                            if layers[l].isWhiteout(p, name) { break }
                            continue
                        }
                        if e == .whiteout { break }
                        guard case .dir(let opaque) = e else { break }
                        childSources.append((l, cp))
                        if opaque { break }
                    }
                    visit(path, childSources)
                }
            }
        }
        visit("", layers.indices.map { ($0, "") })
        return out
    }

    static func view(_ u: UnionNamespace) throws -> [String: String] {
        try u.mergedTree { path, listedFileid, attributes in
            #expect(attributes.fileid == listedFileid)
            return attributes.type == .directory ? "dir" : "file:" + (try u.contents(path))
        }
    }

    @Test(arguments: Array(UInt64(1)...12))
    func unionMatchesReferenceMerge(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed &* 7919)
        let f = Fixture()
        let names = ["a", "b", "c"]
        var layers = [Layer](repeating: Layer(), count: 3)
        for l in 0..<3 {
            f.mkdir(f.lower(l))
            for _ in 0..<14 {
                let depth = Int.random(in: 1...3, using: &rng)
                let parts = (0..<depth).map { _ in names.randomElement(using: &rng)! }
                let path = parts.joined(separator: "/")
                let parent = parts.dropLast().joined(separator: "/")
                // Parents must be directories in this layer.
                var ok = true
                for i in 1..<max(1, parts.count) {
                    let pp = parts[0..<i].joined(separator: "/")
                    switch layers[l].entries[pp] {
                    case nil:
                        f.mkdir(f.lower(l) + "/" + pp)
                        layers[l].entries[pp] = .dir(isOpaque: false)
                    case .dir: break
                    default: ok = false
                    }
                }
                guard ok, layers[l].entries[path] == nil else { continue }
                switch Int.random(in: 0..<6, using: &rng) {
                case 0, 1:
                    f.file(f.lower(l) + "/" + path, "L\(l):\(path)")
                    layers[l].entries[path] = .file("L\(l):\(path)")
                case 2:
                    f.mkdir(f.lower(l) + "/" + path)
                    layers[l].entries[path] = .dir(isOpaque: false)
                case 3:
                    f.overlayWhiteout(f.lower(l) + "/" + path)
                    layers[l].entries[path] = .whiteout
                case 4:
                    f.file(f.lower(l) + "/" + (parent.isEmpty ? "" : parent + "/") + ".wh." + parts.last!)
                    layers[l].ociWhiteouts[parent, default: []].insert(parts.last!)
                default:
                    f.mkdir(f.lower(l) + "/" + path)
                    if Bool.random(using: &rng) {
                        f.file(f.lower(l) + "/" + path + "/.wh..wh..opq")
                    } else {
                        f.setXattr(f.lower(l) + "/" + path, "user.overlay.opaque", "y")
                    }
                    layers[l].entries[path] = .dir(isOpaque: true)
                }
            }
        }
        let u = try f.open(upper: false, lowers: 3)
        let expected = Self.reference(layers)
        let actual = try Self.view(u)
        #expect(actual == expected, "seed \(seed)")
        // The same through an upper, after copying every visible file up.
        let w = try f.open(upper: true, lowers: 3)
        for (p, v) in expected where v.hasPrefix("file:") {
            _ = try w.setattr(w.h(p), .init(mode: 0o600), guardCtime: nil, as: root)
        }
        #expect(try Self.view(w) == expected, "seed \(seed) after copy-up")
    }
}
