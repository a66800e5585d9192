import Logging

/// A union namespace: an optional writable upper layer over read-only lower layers (DESIGN.md §2–5).
///
/// Thread-safe: called concurrently from a pool of threads.
public final class UnionNamespace: Sendable {
    let logger: Logger

    /// - Parameters:
    ///   - upper: a writable layer directory (`tree/`, `work/`, `layer.db` created if missing), or `nil` for a
    ///     read-only namespace.
    ///   - lowers: read-only layer directories, top-most first.
    ///   - stateDirectory: where a read-only namespace keeps its identity sidecar (`identity.db`); used only when
    ///     `upper == nil`. Without it identities live in memory and handles do not survive a restart.
    public init(upper: String?, lowers: [String], stateDirectory: String? = nil, logger: Logger) throws(UnionError) {
        self.logger = logger
        throw .notSupported("UnionNamespace under construction")
    }

    public var rootHandle: ObjectHandle { ObjectHandle(namespaceID: 0, fileid: 1) }
    public var isReadOnly: Bool { true }

    public func getattr(_ h: ObjectHandle) throws(UnionError) -> Attributes { throw .notSupported("getattr") }
    public func lookup(_ dir: ObjectHandle, _ name: [UInt8], as: Credentials) throws(UnionError) -> (ObjectHandle, Attributes) { throw .notSupported("lookup") }
    public func lookupParent(_ dir: ObjectHandle, as: Credentials) throws(UnionError) -> (ObjectHandle, Attributes) { throw .notSupported("lookupParent") }
    public func access(_ h: ObjectHandle, _ requested: AccessMask, as: Credentials) throws(UnionError) -> AccessMask { throw .notSupported("access") }
    public func setattr(_ h: ObjectHandle, _ changes: SetAttributes, guardCtime: Timespec?, as: Credentials) throws(UnionError) -> Attributes { throw .notSupported("setattr") }
    public func readlink(_ h: ObjectHandle, as: Credentials) throws(UnionError) -> [UInt8] { throw .notSupported("readlink") }
    public func read(_ h: ObjectHandle, offset: UInt64, count: Int, as: Credentials) throws(UnionError) -> (data: [UInt8], isEOF: Bool) { throw .notSupported("read") }
    public func write(_ h: ObjectHandle, offset: UInt64, data: UnsafeRawBufferPointer, stable: StableHow, as: Credentials) throws(UnionError) -> (count: Int, committed: StableHow) { throw .notSupported("write") }
    public func create(in dir: ObjectHandle, _ name: [UInt8], mode: CreateMode, attributes: SetAttributes, as: Credentials) throws(UnionError) -> (ObjectHandle, Attributes) { throw .notSupported("create") }
    public func mkdir(in dir: ObjectHandle, _ name: [UInt8], attributes: SetAttributes, as: Credentials) throws(UnionError) -> (ObjectHandle, Attributes) { throw .notSupported("mkdir") }
    public func symlink(in dir: ObjectHandle, _ name: [UInt8], target: [UInt8], attributes: SetAttributes, as: Credentials) throws(UnionError) -> (ObjectHandle, Attributes) { throw .notSupported("symlink") }
    public func mknod(in dir: ObjectHandle, _ name: [UInt8], type: FileType, rdev: DeviceNumber, attributes: SetAttributes, as: Credentials) throws(UnionError) -> (ObjectHandle, Attributes) { throw .notSupported("mknod") }
    public func link(_ h: ObjectHandle, in dir: ObjectHandle, _ name: [UInt8], as: Credentials) throws(UnionError) -> Attributes { throw .notSupported("link") }
    public func remove(in dir: ObjectHandle, _ name: [UInt8], as: Credentials) throws(UnionError) { throw .notSupported("remove") }
    public func rmdir(in dir: ObjectHandle, _ name: [UInt8], as: Credentials) throws(UnionError) { throw .notSupported("rmdir") }
    public func rename(from: ObjectHandle, _ fromName: [UInt8], to: ObjectHandle, _ toName: [UInt8], as: Credentials) throws(UnionError) { throw .notSupported("rename") }
    public func readdir(_ dir: ObjectHandle, after cookie: UInt64, limit: Int = Int.max, as: Credentials) throws(UnionError) -> ListingPage { throw .notSupported("readdir") }
    public func handle(forEntry name: [UInt8], in dir: ObjectHandle) throws(UnionError) -> (ObjectHandle, Attributes) { throw .notSupported("handle(forEntry:)") }
    public func fsstat(_ h: ObjectHandle) throws(UnionError) -> FileSystemStats { throw .notSupported("fsstat") }
    public func commit(_ h: ObjectHandle, offset: UInt64, count: UInt64) throws(UnionError) { throw .notSupported("commit") }
    public func close() {}
}
