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
        /// "" for the namespace every client of the export shares: the export's own upper, or
        /// no upper at all (read-only clients of a per-client export).
        var clientKey: String
    }

    struct OpenNamespace {
        let namespace: UnionNamespace
        /// `clock()` at the last call admitted to it, for closing idle namespaces. Calls move
        /// it under the shared lock; a close decides under the exclusive one, so no call marks
        /// a namespace used while it is being chosen for closing.
        let used: TimeStamp
        var lastUsed: Double { self.used.seconds }

        init(namespace: UnionNamespace, lastUsed: Double) {
            self.namespace = namespace
            self.used = TimeStamp(lastUsed)
        }
    }

    struct State {
        var configuration: Configuration
        var exportsByID: [UInt32: ExportConfiguration]
        var namespaces: [NamespaceKey: OpenNamespace] = [:]
        var mounts: [MountRecord] = []
        /// Client key → reset generation; folded into the namespace identifier so handles from
        /// before a `client reset` are stale.
        var generations: [String: UInt32] = [:]
        /// Client key → wall-clock seconds of its last call.
        var lastSeen: [String: TimeStamp] = [:]
        /// Statistics of namespaces already closed (reset, reload, idle), so the totals the
        /// metrics report never go down.
        var closedStatistics = UnionStatistics(copyUps: 0, copyUpBytes: 0, whiteoutsCreated: 0)
        /// The identifiers handed out to exports (`state_dir/export-ids`).
        var exportIDs = ExportIDTable()
        /// Per-client export → client keys with an upper layer on disk (read from disk on first
        /// need), for `max_clients`.
        var uppers: [UInt32: Set<String>] = [:]
    }

    /// Every call reads it (shared lock); opens, closes, reload and mounts change it.
    let state: ReadWriteLocked<State>
    /// Held while a namespace is opened (see `withNamespace`).
    let openingLock = Mutex(())
    /// Namespaces being closed (reset, idle, reload): opens of these wait until they are.
    let closingKeys = ClosingKeys()
    /// Orders writes of the small state files (mount table, reset generations).
    let persistLock = Mutex(())
    let logger: Logger
    let policy: NamespacePolicy
    /// Monotonic seconds (tests pass their own).
    let clock: @Sendable () -> Double
    /// Tests: called at named steps of a reset ("closed": the old namespace is closed, its
    /// upper not yet moved aside).
    let resetHook = Mutex<(@Sendable (String) -> Void)?>(nil)
    let sweeper = Mutex<Task<Void, Never>?>(nil)

    public init(
        configuration: Configuration, logger: Logger, policy: NamespacePolicy = NamespacePolicy(),
        clock: @escaping @Sendable () -> Double = monotonicSeconds
    ) {
        let stateDirectory = configuration.server.stateDirectory
        var configuration = configuration
        var exportIDs = ExportIDTable.load(stateDirectory: stateDirectory)
        let before = exportIDs
        for (index, recorded) in exportIDs.assign(&configuration) {
            let export = configuration.exports[index]
            logger.warning(
                "export identifier changed: file handles clients hold from before are stale",
                metadata: ["export": "\(export.path)", "key": "export[\(index)].id", "was": "\(recorded)", "now": "\(export.exportID)"])
        }
        if exportIDs != before {
            do {
                try exportIDs.save(stateDirectory: stateDirectory)
            } catch {
                logger.error(
                    "cannot record export identifiers; an export renamed later may change its identifier",
                    metadata: ["file": "\(ExportIDTable.path(stateDirectory))", "error": "\(error)"])
            }
        }
        var exportsByID: [UInt32: ExportConfiguration] = [:]
        for export in configuration.exports { exportsByID[export.exportID] = export }
        var initial = State(configuration: configuration, exportsByID: exportsByID)
        initial.exportIDs = exportIDs
        initial.mounts = ExportRegistry.loadMountTable(stateDirectory: stateDirectory)
        initial.generations = ExportRegistry.loadGenerations(stateDirectory: stateDirectory)
        self.state = ReadWriteLocked(initial)
        self.logger = logger
        self.policy = policy
        self.clock = clock
    }

    public var configuration: Configuration { self.state.withReadLock { $0.configuration } }

    public var exports: [ExportConfiguration] { self.state.withReadLock { $0.configuration.exports } }

    /// The path of the export with identifier `exportID` (bytes 1-3 of its handles).
    public func exportPath(exportID: UInt32) -> String? {
        self.state.withReadLock { $0.exportsByID[exportID]?.path }
    }

    public var mountTable: [MountRecord] { self.state.withReadLock { $0.mounts } }

    // MARK: Access control

    /// The client rule of `export` that applies to the caller, or nil if none does.
    func rule(for export: ExportConfiguration, call: RPCCallContext) -> ClientRule? {
        guard let address = call.remoteIPAddress else { return nil }
        return export.clients.bestMatch(for: address)
    }

    /// The caller's client key for `export`: address or AUTH_SYS machine name, mapped through
    /// `[clients]`, sanitised for use as a path component.
    ///
    /// A machine name is whatever the client says it is. With `client_key = "hostname"` it names
    /// the client's upper only where the operator vouches for it: the rule that admits the
    /// caller names this very host (e.g. a NAT gateway), or `[clients]` lists the name or the
    /// caller's address. Anyone else is keyed by address, so a guest admitted by a network or
    /// `*` rule can neither reach another client's upper by sending its name nor make an upper
    /// for every name it invents.
    func clientKey(for export: ExportConfiguration, rule: ClientRule, call: RPCCallContext, clientKeys: [String: String]) -> String {
        let address = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
        var raw = address
        if export.clientKey == .hostname, case .sys(let auth) = call.credential, !auth.machineName.isEmpty {
            var isVouchedFor = clientKeys[auth.machineName] != nil || clientKeys[address] != nil
            if case .host = rule.match { isVouchedFor = true }
            if isVouchedFor { raw = auth.machineName }
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

    /// Builds the call context for `export`, applying access control and squashing.
    ///
    /// A client whose rule is `ro` needs no upper: it gets the export's shared namespace of the
    /// lowers, unless it has an upper already (it was read-write before a reload), which it
    /// keeps seeing, read-only, with its handles valid. That exception holds only for a key
    /// the client cannot choose (its address, or a machine name behind a rule for its very
    /// address): a guest sending another client's machine name never reads that client's upper.
    /// - Parameter knownClientKeys: the `[clients]` table when the caller read it already, in
    ///   the same lock section as the export (each call takes the state lock as few times as
    ///   it can, and only shared).
    func admit(
        export: ExportConfiguration, call: RPCCallContext, create: Bool, knownClientKeys: [String: String]? = nil,
        mayBlock: Bool = true
    ) throws(CallRejection) -> ExportCall {
        guard let rule = self.rule(for: export, call: call) else { throw .accessDenied }
        if rule.options.requiresPrivilegedPort, call.remotePort >= 1024 { throw .tooWeak }
        guard let credentials = ExportRegistry.squash(call.credential, options: rule.options) else {
            throw .unsupportedCredential
        }
        let clientKeys = knownClientKeys ?? self.state.withReadLock { $0.configuration.clientKeys }
        let clientKey = self.clientKey(for: export, rule: rule, call: call, clientKeys: clientKeys)
        var isShared = !export.hasPerClientUpper
        if export.hasPerClientUpper, rule.options.isReadOnly {
            // May list the uppers on disk (once).
            guard mayBlock else { throw .layerUnavailable("not answered without blocking") }
            let address = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
            var isKeyOfThisHost = clientKey == sanitizedClientKey(clientKeys[address] ?? address)
            if case .host = rule.match { isKeyOfThisHost = true }
            isShared = !(isKeyOfThisHost && self.clientsWithUpper(export).contains(clientKey))
        }
        let key = NamespaceKey(exportID: export.exportID, clientKey: isShared ? "" : clientKey)
        // The namespace and the reset generation are read in one lock section: a reset removes
        // the one and bumps the other in one section too, so a call never pairs a new
        // generation with the namespace of the upper the reset deletes.
        let now = wallClockSeconds()
        let (namespace, generation, isSeen) = try self.withNamespace(key, export: export, create: create && !rule.options.isReadOnly, mayOpen: mayBlock) { state, open in
            let seen = state.lastSeen[clientKey]
            seen?.advance(to: now, granularity: 1)
            return (open.namespace, state.generations[clientKey] ?? 0, seen != nil)
        }
        if !isSeen {
            // A client's first call since the server started.
            self.state.withLock { state in
                if let seen = state.lastSeen[clientKey] {
                    seen.advance(to: now, granularity: 1)
                } else {
                    state.lastSeen[clientKey] = TimeStamp(now)
                }
            }
        }
        return ExportCall(
            namespace: namespace, credentials: credentials, isReadOnly: rule.options.isReadOnly || namespace.isReadOnly,
            exportPath: export.path, exportID: export.exportID, clientKey: clientKey,
            clientTag: isShared ? 0 : self.clientTag(export: export, clientKey: clientKey, generation: generation),
            options: rule.options, call: call, logLevel: self.logger.logLevel)
    }

    /// Resolves a file handle from the wire for the caller: the export must still exist, the
    /// caller must be admitted, and the handle must name the caller's own namespace.
    public func resolve(fileHandle bytes: [UInt8], for call: RPCCallContext) -> Result<(ExportCall, ObjectHandle), CallRejection> {
        self.resolve(fileHandle: bytes, for: call, mayBlock: true)
    }

    /// `resolve` for a caller that must not block (an event loop answering from the caches):
    /// nil when the handle's namespace is not open, or on any refusal (the blocking `resolve`
    /// then answers it, with its log line).
    public func resolveWithoutBlocking(fileHandle bytes: [UInt8], for call: RPCCallContext) -> (ExportCall, ObjectHandle)? {
        try? self.resolve(fileHandle: bytes, for: call, mayBlock: false).get()
    }

    func resolve(fileHandle bytes: [UInt8], for call: RPCCallContext, mayBlock: Bool) -> Result<(ExportCall, ObjectHandle), CallRejection> {
        let handle: ServerFileHandle
        do {
            handle = try ServerFileHandle(bytes: bytes)
        } catch {
            return .failure(.badHandle)
        }
        let found = self.state.withReadLock { state in
            state.exportsByID[handle.exportID].map { ($0, state.configuration.clientKeys) }
        }
        guard let (export, clientKeys) = found else {
            return .failure(.stale)
        }
        do {
            let admitted = try self.admit(
                export: export, call: call, create: false, knownClientKeys: clientKeys, mayBlock: mayBlock)
            guard admitted.clientTag == handle.clientTag else {
                // Either another client's handle (refused) or one of this client's from before a
                // reset, or from before its rule changed between ro and rw (stale).
                guard export.hasPerClientUpper else { return .failure(.accessDenied) }
                if handle.clientTag == 0 { return .failure(.stale) }
                let generations = self.state.withReadLock { $0.generations[admitted.clientKey] } ?? 0
                for old in 0...generations
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
        let export: ExportConfiguration? = self.state.withReadLock { state in
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

    // MARK: Reload and shutdown

    /// Applies a new configuration (SIGHUP): new exports appear, removed ones refuse new MNTs
    /// and their handles go stale (their namespaces are closed), changed client options apply
    /// to the next call because rules are read per call.
    ///
    /// - Throws: `ConfigError` naming `export[N].id`, without applying anything, when the new
    ///   file would change the identifier of an export being served: every handle its clients
    ///   hold would go stale (a diskless client's root file system would vanish).
    public func reload(_ newConfiguration: Configuration) throws(ConfigError) {
        var configuration = newConfiguration
        let (running, stateDirectory, recorded) = self.state.withLock { ($0.configuration.exports, $0.configuration.server.stateDirectory, $0.exportIDs) }
        var exportIDs = recorded
        exportIDs.assign(&configuration)
        for (index, export) in configuration.exports.enumerated() {
            guard let served = running.first(where: { $0.path == export.path }), served.exportID != export.exportID else { continue }
            throw ConfigError(
                key: "export[\(index)].id", value: export.id.map { "\($0)" } ?? "(none)",
                allowed: "export \"\(export.path)\" is served with id \(served.exportID); changing it would make every file handle its clients hold stale: set id = \(served.exportID), or restart the server to change it")
        }
        if exportIDs != recorded {
            do {
                try exportIDs.save(stateDirectory: stateDirectory)
            } catch {
                self.logger.error(
                    "cannot record export identifiers", metadata: ["file": "\(ExportIDTable.path(stateDirectory))", "error": "\(error)"])
            }
        }
        // Opens are held off while the table changes, so none finishes with the old layers.
        let closing: [(NamespaceKey, UnionNamespace)] = self.openingLock.withLock { _ in
            self.state.withLock { state in
                var exportsByID: [UInt32: ExportConfiguration] = [:]
                for export in configuration.exports { exportsByID[export.exportID] = export }
                var dropped: [(NamespaceKey, UnionNamespace)] = []
                for (key, open) in state.namespaces {
                    let old = state.exportsByID[key.exportID]
                    let new = exportsByID[key.exportID]
                    // A namespace survives only if its export still exists with the same layers.
                    if new == nil || old?.lowers != new?.lowers || old?.upper != new?.upper {
                        dropped.append((key, open.namespace))
                    }
                }
                state.configuration = configuration
                state.exportsByID = exportsByID
                state.exportIDs = exportIDs
                state.uppers = [:]
                return self.removeNamespaces(dropped.map(\.0), from: &state)
            }
        }
        self.close(closing)
    }

    /// Copy-ups and whiteouts of every namespace since the server started.
    public var unionStatistics: UnionStatistics {
        self.state.withReadLock { state in
            var total = state.closedStatistics
            for open in state.namespaces.values { total.add(open.namespace.statistics) }
            return total
        }
    }

    /// Closes every namespace (server shutdown).
    public func closeAll() {
        self.sweeper.withLock { task in
            task?.cancel()
            task = nil
        }
        let all = self.state.withLock { state in self.removeNamespaces(Array(state.namespaces.keys), from: &state) }
        self.close(all)
    }
}

extension RPCCallContext {
    /// The caller's address as access rules see it (IPv4-mapped IPv6 folded to IPv4).
    /// Read from the socket address itself: every call asks, and going through text
    /// (`inet_ntop`, then `inet_pton`) cost more than the rest of access control.
    var remoteIPAddress: IPAddress? {
        switch self.remoteAddress {
        case .v4(let address):
            return .v4(UInt32(bigEndian: address.address.sin_addr.s_addr))
        case .v6(let address):
            var raw = address.address.sin6_addr
            return IPAddress(v6Bytes: withUnsafeBytes(of: &raw) { Array($0) })
        default:
            return nil
        }
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
