import Foundation
import Glibc
import Logging
import Synchronization
import TestSupport
import Testing

@testable import Union

/// Real layer directories under a fresh temporary directory, removed at deinit.
final class Fixture: Sendable {
    let base: String

    /// `parent`: where the temporary directory is made (a tmpfs such as /dev/shm for tests that need no disk).
    init(in parent: String = "/tmp") {
        // A fixture that cannot make its directory has nothing to test: stop here, loudly.
        do {
            self.base = try makeTemporaryDirectory("strata-union", in: parent)
        } catch {
            fatalError("\(error)")
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.base)
    }

    var upper: String { self.base + "/upper" }
    func lower(_ i: Int) -> String { self.base + "/lower\(i)" }
    func state() -> String { self.base + "/state" }

    func mkdir(_ path: String, mode: mode_t = 0o755) {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true)
        Glibc.mkdir(path, mode)
        chmod(path, mode)
    }

    func file(_ path: String, _ content: String = "", mode: mode_t = 0o644, uid: uid_t = 0, gid: gid_t = 0) {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true)
        // May fail on purpose: model tests try names that are directories in this layer.
        _ = FileManager.default.createFile(atPath: path, contents: Data(content.utf8))
        chown(path, uid, gid)
        chmod(path, mode)
    }

    /// Files of lower layer `index`, path from the layer's root → contents, made in this order.
    func files(lower index: Int, _ files: KeyValuePairs<String, String>) {
        for (path, content) in files { self.file(self.lower(index) + path, content) }
    }

    /// A file of lower layer 0 (path from the layer's root) with a second name, a hard link.
    func hardLinkedLowerFile(_ path: String, alsoAt other: String, _ content: String) {
        self.file(self.lower(0) + path, content)
        link(self.lower(0) + path, self.lower(0) + other)
    }

    func symlink(_ path: String, to target: String) {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true)
        Glibc.symlink(target, path)
    }

    func overlayWhiteout(_ path: String) {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true)
        _ = mknod(path, S_IFCHR | 0o600, 0)
    }

    func setXattr(_ path: String, _ key: String, _ value: String) {
        typealias Fn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, CInt) -> CInt
        let f = unsafeBitCast(dlsym(dlopen(nil, RTLD_NOW), "lsetxattr"), to: Fn.self)
        let r = Array(value.utf8).withUnsafeBytes { f(path, key, $0.baseAddress, $0.count, 0) }
        #expect(r == 0, "setxattr \(key) on \(path): errno \(errno)")
    }

    func getXattr(_ path: String, _ key: String) -> String? {
        typealias Fn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
        let f = unsafeBitCast(dlsym(dlopen(nil, RTLD_NOW), "lgetxattr"), to: Fn.self)
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { f(path, key, $0.baseAddress, $0.count) }
        return n < 0 ? nil : String(decoding: buf[0..<n], as: UTF8.self)
    }

    func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    func read(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    func open(
        upper: Bool = true, lowers: Int = 1, state: Bool = false, cachedObjects: Int = 256,
        cachedListingEntries: Int = UnionNamespace.defaultCachedListingEntries
    ) throws
        -> UnionNamespace
    {
        for i in 0..<lowers where !self.exists(self.lower(i)) { self.mkdir(self.lower(i)) }
        return try UnionNamespace(
            upper: upper ? self.upper : nil, lowers: (0..<lowers).map { self.lower($0) },
            stateDirectory: state ? self.state() : nil, cachedObjects: cachedObjects,
            cachedListingEntries: cachedListingEntries, logger: Logger(label: "test"), hooks: UnionHooks())
    }
}

let root = Credentials.root
let alice = Credentials(uid: 1000, gid: 1000, groups: [])
let bob = Credentials(uid: 1001, gid: 1001, groups: [100])

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

extension UnionNamespace {
    /// Walks a slash-separated path from the root as `cred`.
    func walk(_ path: String, as cred: Credentials = .root) throws(UnionError) -> (ObjectHandle, Attributes) {
        var h = self.rootHandle
        var a = try self.getattr(h)
        for c in path.split(separator: "/") {
            (h, a) = try self.lookup(h, Array(c.utf8), as: cred)
        }
        return (h, a)
    }

    func h(_ path: String) throws(UnionError) -> ObjectHandle { try self.walk(path).0 }

    /// The merged tree as path → what `describe` says of it: every name READDIR lists (with the fileid it lists),
    /// its attributes by walking its path, every directory descended into.
    func mergedTree(
        _ describe: (_ path: String, _ listedFileid: UInt64, _ attributes: Attributes) throws -> String
    ) throws -> [String: String] {
        var out: [String: String] = [:]
        var queue = [""]
        while let dir = queue.popLast() {
            for entry in try self.readdir(self.h(dir), after: 0, as: root).entries {
                let name = String(decoding: entry.name, as: UTF8.self)
                let path = dir.isEmpty ? name : dir + "/" + name
                let attributes = try self.walk(path).1
                if attributes.type == .directory { queue.append(path) }
                out[path] = try describe(path, entry.fileid, attributes)
            }
        }
        return out
    }

    func names(_ path: String, as cred: Credentials = .root) throws(UnionError) -> [String] {
        try self.readdir(self.h(path), after: 0, as: cred).entries.map { String(decoding: $0.name, as: UTF8.self) }
            .sorted()
    }

    func contents(_ path: String) throws(UnionError) -> String {
        String(decoding: try self.read(self.h(path), offset: 0, count: 1 << 20, as: .root).data, as: UTF8.self)
    }

    func put(_ path: String, _ text: String, at offset: UInt64 = 0, as cred: Credentials = .root) throws(UnionError) {
        let bytes = Array(text.utf8)
        let h = try self.h(path)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        defer { buf.deallocate() }
        buf.copyBytes(from: bytes)
        _ = try self.write(
            h, offset: offset, data: UnsafeRawBufferPointer(rebasing: buf[0..<bytes.count]), stable: .fileSync, as: cred
        )
    }

    func mkfile(_ dir: String, _ name: String, _ text: String = "", as cred: Credentials = .root) throws(UnionError) {
        _ = try self.create(in: self.h(dir), b(name), mode: .guarded, attributes: SetAttributes(), as: cred)
        if !text.isEmpty { try self.put(dir + "/" + name, text, as: cred) }
    }
}

/// A flag shared with another thread.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { self.value.store(true, ordering: .relaxed) }
    var isSet: Bool { self.value.load(ordering: .relaxed) }
}

/// Holds the next flush of `sidecar` (once) until `release` is signalled (30 s at most); `entered` is signalled when it
/// is held. Changes made meanwhile queue for the flush after it. The caller clears `beforeFlush` when done.
func holdFirstFlush(_ sidecar: Sidecar) -> (entered: DispatchSemaphore, release: DispatchSemaphore) {
    let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
    let holdOnce = Flag()
    sidecar.beforeFlush.withLock {
        $0 = {
            if !holdOnce.isSet {
                holdOnce.set()
                entered.signal()
                _ = release.wait(timeout: .now() + 30)
            }
        }
    }
    return (entered, release)
}
