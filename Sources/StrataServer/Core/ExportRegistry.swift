import Foundation
import Logging
import NIOCore
import SunRPC
import Synchronization
import Union

/// One line of the mount table (MOUNT DUMP, `showmount -a`).
public struct MountRecord: Sendable, Hashable {
    public var host: String
    public var directory: String
    /// The client key the mount was admitted under (its upper layer's name).
    public var clientKey: String
}

/// The exports of a running server and the union namespaces behind them, one per export
/// (shared or no upper) or one per export and client (per-client uppers). Thread-safe: the
/// handlers call it from many pool threads.
public final class ExportRegistry: Sendable {
    struct NamespaceKey: Hashable {
        var exportID: UInt32
        var clientKey: String  // "" when the export has no per-client upper
    }

    struct State {
        var configuration: Configuration
        var exportsByID: [UInt32: ExportConfiguration]
        var namespaces: [NamespaceKey: UnionNamespace] = [:]
        var mounts: [MountRecord] = []
        /// Client key → reset generation; folded into the namespace identifier so handles from
        /// before a `client reset` are stale.
        var generations: [String: UInt32] = [:]
        var lastSeen: [String: Date] = [:]
        /// Statistics of namespaces already closed (reset, reload), so the totals the metrics
        /// report never go down.
        var closedStatistics = UnionStatistics(copyUps: 0, copyUpBytes: 0, whiteoutsCreated: 0)
    }

    let state: Mutex<State>
    /// Held while a namespace is opened (see `namespace(export:clientKey:create:)`).
    let openingLock = Mutex(())
    /// Orders writes of the small state files (mount table, reset generations).
    let persistLock = Mutex(())
    let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        var exportsByID: [UInt32: ExportConfiguration] = [:]
        for export in configuration.exports { exportsByID[export.exportID] = export }
        var initial = State(configuration: configuration, exportsByID: exportsByID)
        initial.mounts = ExportRegistry.loadMountTable(stateDirectory: configuration.server.stateDirectory)
        initial.generations = ExportRegistry.loadGenerations(stateDirectory: configuration.server.stateDirectory)
        self.state = Mutex(initial)
        self.logger = logger
    }

    public var configuration: Configuration { self.state.withLock { $0.configuration } }

    public var exports: [ExportConfiguration] { self.state.withLock { $0.configuration.exports } }

    /// The path of the export with identifier `exportID` (bytes 1-3 of its handles).
    public func exportPath(exportID: UInt32) -> String? {
        self.state.withLock { $0.exportsByID[exportID]?.path }
    }

    public var mountTable: [MountRecord] { self.state.withLock { $0.mounts } }

    // MARK: Access control

    /// The client rule of `export` that applies to the caller, or nil if none does.
    func rule(for export: ExportConfiguration, call: RPCCallContext) -> ClientRule? {
        guard let address = call.remoteIPAddress else { return nil }
        return export.clients.bestMatch(for: address)
    }

    /// The caller's client key for `export`: address or AUTH_SYS machine name, mapped through
    /// `[clients]`, sanitised for use as a path component.
    func clientKey(for export: ExportConfiguration, call: RPCCallContext, clientKeys: [String: String]) -> String {
        let address = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
        var raw = address
        if export.clientKey == .hostname, case .sys(let auth) = call.credential, !auth.machineName.isEmpty {
            raw = auth.machineName
        }
        if let mapped = clientKeys[raw] ?? clientKeys[address] {
            raw = mapped
        }
        return sanitizedClientKey(raw)
    }

    static func squash(_ credential: RPCCredential, options: ClientOptions) -> Credentials? {
        let anonymous = Credentials(uid: options.anonymousUID, gid: options.anonymousGID, groups: [])
        switch credential {
        case .none:
            return anonymous
        case .sys(let auth):
            if options.squashesAll { return anonymous }
            guard options.squashesRoot else {
                return Credentials(uid: auth.uid, gid: auth.gid, groups: auth.groups)
            }
            // root_squash maps uid 0 and gid 0, including gid 0 among the supplementary groups,
            // as knfsd does.
            return Credentials(
                uid: auth.uid == 0 ? options.anonymousUID : auth.uid,
                gid: auth.gid == 0 ? options.anonymousGID : auth.gid,
                groups: auth.groups.map { $0 == 0 ? options.anonymousGID : $0 })
        case .other:
            return nil
        }
    }

    // MARK: Namespaces

    /// The `clientTag` of the handles of `clientKey`'s namespace in `export` at reset generation `generation`.
    func clientTag(export: ExportConfiguration, clientKey: String, generation: UInt32) -> UInt32 {
        guard export.hasPerClientUpper else { return 0 }
        let hash = stableHash64(Array("\(clientKey)#\(generation)".utf8))
        let folded = UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
        return folded == 0 ? 1 : folded
    }

    func upperPath(export: ExportConfiguration, clientKey: String) -> String? {
        export.upper?.replacingOccurrences(of: ExportConfiguration.clientPlaceholder, with: clientKey)
    }

    /// The namespace of `export` for `clientKey`, opened (and, for `create`, its upper layer
    /// created) on first use. Without `create`, a per-client upper that does not exist yet is
    /// `.stale`: only MNT brings a client's layer into being.
    func namespace(export: ExportConfiguration, clientKey: String, create: Bool) throws(CallRejection) -> UnionNamespace {
        let key = NamespaceKey(exportID: export.exportID, clientKey: export.hasPerClientUpper ? clientKey : "")
        if let existing = self.state.withLock({ $0.namespaces[key] }) {
            return existing
        }
        // Opening is serialised: after a restart every client's first calls arrive at once, and
        // two opens of one layer race on its sidecar (SQLite "database is locked") and on its
        // work/ cleanup. Opens are rare (once per namespace), so one lock for all costs nothing.
        return try self.openingLock.withLock { (_: inout Void) throws(CallRejection) -> UnionNamespace in
            if let existing = self.state.withLock({ $0.namespaces[key] }) {
                return existing
            }
            let opened = try self.open(export: export, clientKey: clientKey, create: create)
            self.state.withLock { $0.namespaces[key] = opened }
            return opened
        }
    }

    private func open(export: ExportConfiguration, clientKey: String, create: Bool) throws(CallRejection) -> UnionNamespace {
        let upper = self.upperPath(export: export, clientKey: clientKey)
        if let upper, export.hasPerClientUpper, !create, !FileManager.default.fileExists(atPath: upper) {
            throw .stale
        }
        let stateDirectory = self.state.withLock { $0.configuration.server.stateDirectory }
        let identityDirectory = "\(stateDirectory)/exports/\(String(export.exportID, radix: 16))"
        do {
            if let upper {
                try FileManager.default.createDirectory(atPath: upper, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } else {
                try FileManager.default.createDirectory(atPath: identityDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
        } catch {
            throw .layerUnavailable("cannot create \(upper ?? identityDirectory): \(error.localizedDescription)")
        }
        do {
            // Each cached object may hold a descriptor per layer. A fleet has one namespace per
            // client, so those get a smaller cache: 100 clients × 64 × 3 layers stays far below
            // the descriptor limit the server raises itself to at start.
            return try UnionNamespace(
                upper: upper, lowers: export.lowers, stateDirectory: identityDirectory,
                cachedObjects: export.hasPerClientUpper ? 64 : 256,
                logger: self.logger.with(["export": "\(export.path)", "client": "\(clientKey)"]))
        } catch {
            let detail = self.layerProblem(export: export, error: error)
            self.logger.error(
                "cannot open layers: \(detail)", metadata: ["export": "\(export.path)", "client": "\(clientKey)", "upper": "\(upper ?? "-")", "error": "\(error)"])
            throw .layerUnavailable(detail)
        }
    }

    /// Builds the call context for `export`, applying access control and squashing.
    func admit(export: ExportConfiguration, call: RPCCallContext, create: Bool) throws(CallRejection) -> ExportCall {
        guard let rule = self.rule(for: export, call: call) else { throw .accessDenied }
        if rule.options.requiresPrivilegedPort, call.remotePort >= 1024 { throw .tooWeak }
        guard let credentials = ExportRegistry.squash(call.credential, options: rule.options) else {
            throw .unsupportedCredential
        }
        let clientKeys = self.state.withLock { $0.configuration.clientKeys }
        let clientKey = self.clientKey(for: export, call: call, clientKeys: clientKeys)
        let namespace = try self.namespace(export: export, clientKey: clientKey, create: create)
        let now = Date()
        let currentGeneration = self.state.withLock { state in
            state.lastSeen[clientKey] = now
            return state.generations[clientKey] ?? 0
        }
        return ExportCall(
            namespace: namespace, credentials: credentials, isReadOnly: rule.options.isReadOnly || namespace.isReadOnly,
            exportPath: export.path, exportID: export.exportID, clientKey: clientKey,
            clientTag: self.clientTag(export: export, clientKey: clientKey, generation: currentGeneration),
            options: rule.options, logger: call.logger)
    }

    /// Resolves a file handle from the wire for the caller: the export must still exist, the
    /// caller must be admitted, and the handle must name the caller's own namespace.
    public func resolve(fileHandle bytes: [UInt8], for call: RPCCallContext) -> Result<(ExportCall, ObjectHandle), CallRejection> {
        let handle: ServerFileHandle
        do {
            handle = try ServerFileHandle(bytes: bytes)
        } catch {
            return .failure(.badHandle)
        }
        guard let export = self.state.withLock({ $0.exportsByID[handle.exportID] }) else {
            return .failure(.stale)
        }
        do {
            let admitted = try self.admit(export: export, call: call, create: false)
            guard admitted.clientTag == handle.clientTag else {
                // Either another client's handle (refused) or one from before a reset (stale).
                let generations = self.state.withLock { $0.generations[admitted.clientKey] } ?? 0
                for old in 0..<generations
                where self.clientTag(export: export, clientKey: admitted.clientKey, generation: old) == handle.clientTag {
                    return .failure(.stale)
                }
                return .failure(.accessDenied)
            }
            return .success((admitted, handle.object))
        } catch {
            return .failure(error)
        }
    }

    // MARK: MOUNT

    /// MNT: admits the caller to the export that contains `path`, creating its upper layer on
    /// first mount, records the mount for DUMP and returns the file handle of `path`: the
    /// export's root, or, as mountd allows, a directory below it (libnfs mounts the directory
    /// of the file it is asked for), looked up in the union with the caller's credentials.
    public func mount(path: String, call: RPCCallContext) -> Result<(ExportCall, [UInt8]), CallRejection> {
        let components = path.split(separator: "/").map(String.init)
        let export: ExportConfiguration? = self.state.withLock { state in
            // The longest export path that is a prefix of `path` on component boundaries.
            state.configuration.exports
                .filter { export in
                    let exportComponents = export.path.split(separator: "/").map(String.init)
                    return components.starts(with: exportComponents)
                }
                .max { $0.path.count < $1.path.count }
        }
        guard let export else { return .failure(.noSuchExport) }
        let below = components.dropFirst(export.path.split(separator: "/").count)
        do {
            let admitted = try self.admit(export: export, call: call, create: true)
            var object = admitted.namespace.rootHandle
            for component in below {
                do {
                    let (next, attributes) = try admitted.namespace.lookup(object, Array(component.utf8), as: admitted.credentials)
                    guard attributes.type == .directory else { return .failure(.notDirectory) }
                    object = next
                } catch {
                    switch error {
                    case .accessDenied, .notPermitted: return .failure(.accessDenied)
                    case .notDirectory: return .failure(.notDirectory)
                    default: return .failure(.noSuchExport)
                    }
                }
            }
            let host = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
            let record = MountRecord(host: host, directory: export.path, clientKey: admitted.clientKey)
            self.changeMountTable { mounts in
                if !mounts.contains(record) { mounts.append(record) }
            }
            return .success((admitted, admitted.fileHandle(object)))
        } catch {
            return .failure(error)
        }
    }

    /// UMNT: forgets the caller's mount of `path`.
    public func unmount(path: String, host: String) {
        self.changeMountTable { $0.removeAll { $0.host == host && $0.directory == path } }
    }

    /// UMNTALL: forgets every mount of the caller.
    public func unmountAll(host: String) {
        self.changeMountTable { $0.removeAll { $0.host == host } }
    }

    // MARK: Reload and shutdown

    /// Applies a new configuration (SIGHUP): new exports appear, removed ones refuse new MNTs
    /// and their handles go stale (their namespaces are closed), changed client options apply
    /// to the next call because rules are read per call.
    public func reload(_ configuration: Configuration) {
        let closing: [UnionNamespace] = self.state.withLock { state in
            var exportsByID: [UInt32: ExportConfiguration] = [:]
            for export in configuration.exports { exportsByID[export.exportID] = export }
            var dropped: [UnionNamespace] = []
            for (key, namespace) in state.namespaces {
                let old = state.exportsByID[key.exportID]
                let new = exportsByID[key.exportID]
                // A namespace survives only if its export still exists with the same layers.
                if new == nil || old?.lowers != new?.lowers || old?.upper != new?.upper {
                    dropped.append(namespace)
                    state.namespaces[key] = nil
                }
            }
            state.configuration = configuration
            state.exportsByID = exportsByID
            for namespace in dropped { state.closedStatistics.add(namespace.statistics) }
            return dropped
        }
        for namespace in closing { namespace.close() }
    }

    /// Copy-ups and whiteouts of every namespace since the server started.
    public var unionStatistics: UnionStatistics {
        self.state.withLock { state in
            var total = state.closedStatistics
            for namespace in state.namespaces.values { total.add(namespace.statistics) }
            return total
        }
    }

    /// Closes every namespace (server shutdown).
    public func closeAll() {
        let all = self.state.withLock { state in
            let values = Array(state.namespaces.values)
            state.namespaces = [:]
            return values
        }
        for namespace in all { namespace.close() }
    }

    // MARK: Persistence of small server state

    static func mountTablePath(_ stateDirectory: String) -> String { "\(stateDirectory)/rmtab" }

    /// Changes the mount table and writes it to disk. The file is written outside the state
    /// lock, which every NFS call takes, under a lock of its own that also orders the writes:
    /// each one writes the table as it is when it gets that lock, so the last write wins with
    /// the newest table.
    func changeMountTable(_ change: (inout [MountRecord]) -> Void) {
        self.state.withLock { change(&$0.mounts) }
        self.persistLock.withLock { _ in
            let (mounts, stateDirectory) = self.state.withLock { ($0.mounts, $0.configuration.server.stateDirectory) }
            ExportRegistry.saveMountTable(mounts, stateDirectory: stateDirectory)
        }
    }

    static func loadMountTable(stateDirectory: String) -> [MountRecord] {
        guard let text = try? String(contentsOfFile: mountTablePath(stateDirectory), encoding: .utf8) else { return [] }
        // One mount a line: host, client key, export path (the path may contain spaces: last).
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 2).map(String.init)
            guard fields.count == 3 else { return nil }
            return MountRecord(host: fields[0], directory: fields[2], clientKey: fields[1])
        }
    }

    static func saveMountTable(_ mounts: [MountRecord], stateDirectory: String) {
        let text = mounts.map { "\($0.host) \($0.clientKey) \($0.directory)\n" }.joined()
        try? FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        try? text.write(toFile: mountTablePath(stateDirectory), atomically: true, encoding: .utf8)
    }

    static func generationsPath(_ stateDirectory: String) -> String { "\(stateDirectory)/client-generations" }

    static func loadGenerations(stateDirectory: String) -> [String: UInt32] {
        guard let text = try? String(contentsOfFile: generationsPath(stateDirectory), encoding: .utf8) else { return [:] }
        var result: [String: UInt32] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = UInt32(parts[1]) { result[String(parts[0])] = value }
        }
        return result
    }
}

extension RPCCallContext {
    /// The caller's address as access rules see it (IPv4-mapped IPv6 folded to IPv4).
    var remoteIPAddress: IPAddress? {
        self.remoteAddress.ipAddress.flatMap { IPAddress($0) }
    }

    var remotePort: Int { self.remoteAddress.port ?? 0 }
}

extension Logger {
    func with(_ metadata: Logger.Metadata) -> Logger {
        var copy = self
        for (key, value) in metadata { copy[metadataKey: key] = value }
        return copy
    }
}


extension UnionStatistics {
    mutating func add(_ other: UnionStatistics) {
        self.copyUps &+= other.copyUps
        self.copyUpBytes &+= other.copyUpBytes
        self.whiteoutsCreated &+= other.whiteoutsCreated
    }
}
