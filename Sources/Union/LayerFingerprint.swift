import Foundation
import Glibc
import Logging

/// What a read-only layer directory held when an image version was published: enough to tell, later, that it changed
/// and what changed. A version's layers are immutable by contract; the server checks them against this before it
/// serves them, because a lower edited under a running union shows clients files that change under them.
public struct LayerFingerprint: Codable, Sendable, Hashable {
    /// The layer directory.
    public var directory: String
    /// Files, directories, symlinks and other entries below it (the directory itself not counted).
    public var entries: Int
    /// Sum of the sizes of its regular files.
    public var bytes: UInt64
    /// SipHash-based digest of every entry's path, type, mode, owner, size and modification time, in name order.
    public var digest: String
    /// The newest status-change time (ctime, nanoseconds since the epoch) of any entry: an entry changed since has a
    /// newer one, whatever its other times say (ctime cannot be set by a user).
    public var newestChange: Int64

    public init(directory: String, entries: Int, bytes: UInt64, digest: String, newestChange: Int64) {
        self.directory = directory
        self.entries = entries
        self.bytes = bytes
        self.digest = digest
        self.newestChange = newestChange
    }
}

extension LayerTools {
    /// Walks `layerDirectory` (never following a symlink) and fingerprints it.
    public static func fingerprint(layerDirectory: String) throws -> LayerFingerprint {
        try Self.scan(layerDirectory, changedSince: nil).fingerprint
    }

    /// Nil if `recorded`'s layer is as it was when fingerprinted; otherwise what changed, in words naming the layer,
    /// e.g. `lower layer /srv/v1: 2 entries changed since it was published (etc/motd, usr/bin), 120 → 121 entries`.
    public static func changes(since recorded: LayerFingerprint) throws -> String? {
        let now: (fingerprint: LayerFingerprint, newer: [String])
        do {
            now = try Self.scan(recorded.directory, changedSince: recorded.newestChange)
        } catch {
            return "lower layer \(recorded.directory) cannot be read: \(error)"
        }
        guard now.fingerprint.digest != recorded.digest else { return nil }
        var parts: [String] = []
        if !now.newer.isEmpty {
            let shown = now.newer.prefix(5).map { $0.isEmpty ? "." : $0 }.joined(separator: ", ")
            parts.append(
                "\(now.newer.count) entr\(now.newer.count == 1 ? "y" : "ies") changed at or after its publication (\(shown)\(now.newer.count > 5 ? ", ..." : ""))"
            )
        }
        if now.fingerprint.entries != recorded.entries {
            parts.append("\(recorded.entries) → \(now.fingerprint.entries) entries")
        }
        if now.fingerprint.bytes != recorded.bytes {
            parts.append("\(recorded.bytes) → \(now.fingerprint.bytes) bytes")
        }
        if parts.isEmpty { parts.append("its contents differ from its fingerprint") }
        return "lower layer \(recorded.directory): " + parts.joined(separator: ", ")
    }

    /// The fingerprint of `directory`, and the layer-relative paths of entries whose ctime is at or after
    /// `changedSince`. At, not only after: the kernel stamps ctimes from a clock that advances in ticks of a few
    /// milliseconds, so an entry changed just after the publish can carry the publish's newest ctime exactly (an
    /// entry last changed at that tick before the publish is listed too; the digest, not this list, decides).
    static func scan(
        _ directory: String, changedSince: Int64?
    ) throws -> (fingerprint: LayerFingerprint, newer: [String]) {
        var digest = FingerprintDigest()
        var entries = 0
        var bytes: UInt64 = 0
        var newest: Int64 = 0
        var newer: [String] = []
        do throws(UnionError) {
            let root = try Files.openDirectoryAbsolute(directory)
            let rootStat = try Files.fstat(root, path: directory)
            digest.add(entry: [], rootStat)
            newest = rootStat.changeTime
            if let changedSince, rootStat.changeTime >= changedSince { newer.append("") }
            var dirPaths: [UInt64: String] = [:]
            try Self.walk(root, "", &dirPaths) { (_, path, entry, st) throws(UnionError) -> Bool in
                let relative = Self.join(path, entry.name.displayString)
                entries += 1
                if st.st_mode & S_IFMT == S_IFREG { bytes &+= UInt64(max(0, st.st_size)) }
                digest.add(entry: Array(relative.utf8), st)
                newest = max(newest, st.changeTime)
                if let changedSince, st.changeTime >= changedSince { newer.append(relative) }
                return st.isDirectory
            }
        } catch {
            throw LayerToolError.failed("fingerprint \(directory)", error)
        }
        return (
            LayerFingerprint(
                directory: directory, entries: entries, bytes: bytes, digest: digest.hex, newestChange: newest),
            newer
        )
    }

    /// Names a client's writable layer `upper` changed (files it holds, copied up or created; names it whited out;
    /// directories it made opaque) that the lower stack `new` also changed with respect to `old` (both top-most first):
    /// the names where the client's own edit now hides an update of the image. Sorted, layer-relative.
    public static func conflicts(upper: String, from old: [String], to new: [String]) throws -> [String] {
        let report = try Self.inspect(layerDirectory: upper)
        var changed = Set(report.whiteouts).union(report.opaqueDirectories).union(report.redirects.keys)
        do throws(UnionError) {
            let tree = try Files.openDirectoryAbsolute(upper + "/tree")
            var dirPaths: [UInt64: String] = [:]
            try Self.walk(tree, "", &dirPaths) { (_, path, entry, st) throws(UnionError) -> Bool in
                if !st.isDirectory { changed.insert(Self.join(path, entry.name.displayString)) }
                return st.isDirectory
            }
            let logger = Logger(label: "strata.conflicts")
            let before = try UnionNamespace(
                upper: nil, lowers: old, stateDirectory: nil, cachedObjects: 0, logger: logger)
            defer { before.close() }
            let after = try UnionNamespace(
                upper: nil, lowers: new, stateDirectory: nil, cachedObjects: 0, logger: logger)
            defer { after.close() }
            var conflicting: [String] = []
            for name in changed.sorted() where try Self.lowerView(before, name) != Self.lowerView(after, name) {
                conflicting.append(name)
            }
            return conflicting
        } catch {
            throw LayerToolError.failed("conflicts of \(upper)", error)
        }
    }

    /// What a union of lowers shows at `path`: nil if nothing, else the attributes an update changes.
    static func lowerView(_ view: UnionNamespace, _ path: String) throws(UnionError) -> [Int64]? {
        var node = try view.rootNode()
        for component in path.split(separator: "/") {
            guard node.isDirectory, let next = try view.child(of: node, Array(component.utf8)) else { return nil }
            node = next
        }
        let st = node.top.st
        return [
            Int64(st.st_mode), Int64(st.st_uid), Int64(st.st_gid), Int64(st.st_size), Int64(st.st_mtim.tv_sec),
            Int64(st.st_mtim.tv_nsec),
        ]
    }
}

/// SipHash-2-4 (`HandleKey.hash`) chained over 64-bit words: a digest for change detection, not a secret.
struct FingerprintDigest {
    private var state: UInt64 = 0x5374_7261_7461_4650  // "StrataFP"

    mutating func add(_ word: UInt64) {
        self.state = HandleKey.hash(word: word ^ self.state, k0: 0x6c61_7965_7266_7072, k1: 0x696e_7464_6967_6573)
    }

    mutating func add(entry path: [UInt8], _ st: stat) {
        self.add(UInt64(path.count))
        var index = 0
        while index < path.count {
            var word: UInt64 = 0
            for byte in path[index..<min(index + 8, path.count)] { word = word << 8 | UInt64(byte) }
            self.add(word)
            index += 8
        }
        self.add(UInt64(st.st_mode))
        self.add(UInt64(st.st_uid) << 32 | UInt64(st.st_gid))
        self.add(UInt64(bitPattern: Int64(st.st_size)))
        self.add(UInt64(bitPattern: Int64(st.st_mtim.tv_sec)))
        self.add(UInt64(bitPattern: Int64(st.st_mtim.tv_nsec)))
        if st.st_mode & S_IFMT == S_IFCHR || st.st_mode & S_IFMT == S_IFBLK { self.add(UInt64(st.st_rdev)) }
    }

    var hex: String {
        let text = String(self.state, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }
}

extension stat {
    /// ctime in nanoseconds since the epoch.
    var changeTime: Int64 { Int64(self.st_ctim.tv_sec) * 1_000_000_000 + Int64(self.st_ctim.tv_nsec) }
}
