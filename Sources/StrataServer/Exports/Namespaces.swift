import Basics
import Foundation
import Union

/// When the registry closes namespaces nobody uses. A closed namespace reopens on its next
/// call, and the handles its clients hold stay valid (as across a restart): closing only gives
/// back descriptors and memory (about 8 descriptors and 190 KiB each).
public struct NamespacePolicy: Sendable {
    /// Open namespaces kept beyond this are closed, least recently used first.
    public var maxOpen = 256
    /// A namespace unused this long is closed.
    public var idleSeconds: Double = 600
    /// A namespace whose client has unmounted (no mount table entry left) is closed after this.
    public var unmountedIdleSeconds: Double = 60
    /// A namespace used more recently than this is never closed, whatever the bound: a call
    /// admitted to it may still be running (a long copy-up), and closing under it would answer
    /// that call NFS3ERR_STALE.
    public var minimumIdleSeconds: Double = 60
    /// How often the server looks for idle namespaces.
    public var sweepSeconds: Double = 15
    /// How long an open waits for the same namespace to finish closing (a client reset moving a
    /// large upper aside) before it is refused.
    public var closingWaitSeconds: Double = 30

    public init() {}
}

/// Seconds of CLOCK_MONOTONIC.
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Namespaces being closed. Until one is closed (and, for a reset, its upper moved aside), no
/// call may open the same layers again: two namespaces on one upper would race on its sidecar
/// and its work directory, and one opened on an upper about to be deleted answers every
/// CREATE with NOENT.
final class ClosingKeys: @unchecked Sendable {
    // `keys` and `waiting` are protected by `condition`.
    private let condition = NSCondition()
    private var keys: Set<ExportRegistry.NamespaceKey> = []
    private var waiting = 0

    func begin(_ key: ExportRegistry.NamespaceKey) {
        self.condition.lock()
        self.keys.insert(key)
        self.condition.unlock()
    }

    func end(_ key: ExportRegistry.NamespaceKey) {
        self.condition.lock()
        self.keys.remove(key)
        self.condition.broadcast()
        self.condition.unlock()
    }

    func contains(_ key: ExportRegistry.NamespaceKey) -> Bool {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.keys.contains(key)
    }

    /// Waits until `key` is not being closed, at most until `deadline` (monotonic seconds);
    /// false on time-out.
    func waitUntilClosed(_ key: ExportRegistry.NamespaceKey, deadline: Double) -> Bool {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard self.keys.contains(key) else { return true }
        self.waiting += 1
        defer { self.waiting -= 1 }
        while self.keys.contains(key) {
            let left = deadline - monotonicSeconds()
            if left <= 0 { return false }
            _ = self.condition.wait(until: Date().addingTimeInterval(left))
        }
        return true
    }

    /// Opens waiting now (tests wait for a queued open with it).
    var waitingCount: Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.waiting
    }
}

extension ExportRegistry {
    /// The names a per-client namespace's cached listings hold together (`UnionNamespace.listings`): a booting
    /// client lists a few small directories, and a room of idle clients keeps what it listed.
    static let perClientListingEntries = 16_384

    /// The `clientTag` of the handles of `clientKey`'s namespace in `export` at reset generation
    /// `generation` on image version `version` (version 1, or an export without an image, keeps
    /// the tag of before image versions, so handles survive an export's first publish).
    func clientTag(export: ExportConfiguration, clientKey: String, generation: UInt32, version: Int = 1) -> UInt32 {
        guard export.hasPerClientUpper else { return 0 }
        let suffix = version > 1 ? "#v\(version)" : ""
        return Self.fold(FNV1a64.hash("\(clientKey)#\(generation)\(suffix)".utf8))
    }

    func upperPath(export: ExportConfiguration, clientKey: String) -> String? {
        export.upper?.replacingOccurrences(of: ExportConfiguration.clientPlaceholder, with: clientKey)
    }

    /// Runs `body` on the open namespace `key` under the shared state lock, opening it first if needed
    /// (waiting while the same namespace is being closed). Marks it used.
    func withNamespace<Value: Sendable>(
        _ key: NamespaceKey, export: ExportConfiguration, create: Bool, mayOpen: Bool = true,
        _ body: (State, OpenNamespace) -> Value
    ) throws(CallRejection) -> Value {
        let deadline = monotonicSeconds() + self.policy.closingWaitSeconds
        // Each round either finds the namespace open or opens it; another round is needed only
        // when a close (reset, idle) removes it in between, at most a few times in practice.
        for _ in 0..<100 {
            let now = self.clock()
            // Shared: calls do not wait for each other. A close takes the namespace out under
            // the exclusive lock, so one found here is not being closed while it is marked used.
            let found: Value? = self.state.withReadLock { state in
                guard let open = state.namespaces[key] else { return nil }
                open.used.advance(to: now, granularity: 0.001)
                return body(state, open)
            }
            if let found { return found }
            guard mayOpen else { throw .layerUnavailable("not open") }
            if !self.closingKeys.waitUntilClosed(key, deadline: deadline) {
                throw .layerUnavailable(
                    "the layers of \(export.path) for client \(key.clientKey) are still being closed (client reset?); retry"
                )
            }
            // Opening is serialised per namespace: after a restart every client's first calls
            // arrive at once, and two opens of one layer race on its sidecar (SQLite "database
            // is locked") and on its work/ cleanup. Other clients' opens go on beside it.
            let opened = try self.openingLock.opening(key) { () throws(CallRejection) -> Bool in
                if self.state.withReadLock({ $0.namespaces[key] != nil }) { return false }
                // A close that began after the wait above: wait again, without the lock.
                if self.closingKeys.contains(key) { return false }
                let namespace = try self.open(export: export, key: key, create: create)
                let count = self.state.withLock { state in
                    state.namespaces[key] = OpenNamespace(namespace: namespace, lastUsed: self.clock())
                    return state.namespaces.count
                }
                return count > self.policy.maxOpen
            }
            if opened { self.closeIdleNamespaces() }
        }
        throw .layerUnavailable(
            "the layers of \(export.path) for client \(key.clientKey) were closed again at every attempt; retry")
    }

    /// Opens the layers of `key`. Caller holds `openingLock` for `key`.
    private func open(
        export: ExportConfiguration, key: NamespaceKey, create: Bool
    ) throws(CallRejection) -> UnionNamespace {
        // The shared namespace of a per-client export has no upper: read-only clients see the
        // lowers, with the identity store in state_dir as a read-only export has.
        let upper =
            key.clientKey.isEmpty && export.hasPerClientUpper
            ? nil : self.upperPath(export: export, clientKey: key.clientKey)
        let (stateDirectory, limit, image) = self.state.withReadLock {
            (
                $0.configuration.server.stateDirectory, export.clientLimit(server: $0.configuration.server),
                self.image(of: export, in: $0)
            )
        }
        // The version: it must still be the client's (a move at MNT since the call read it
        // closes the old one, and two namespaces on one upper must never be open), and still
        // exist (gc), and its layers must be as published.
        var lowers = export.lowers
        if let image {
            guard let version = image.version(key.version),
                key.clientKey.isEmpty || image.placement(of: key.clientKey) == key.version
            else { throw .stale }
            try self.verify(export: export, version: version)
            lowers = version.lowers
        } else if key.version != 1 {
            throw .stale
        }
        // A new client's upper is counted against max_clients before it is made, in one step
        // with the check: opens of different clients run at the same time, and two of them
        // must not both take the last place.
        var reservedUpper = false
        if let upper, export.hasPerClientUpper, !FileManager.default.fileExists(atPath: upper) {
            guard create else { throw .stale }
            _ = self.clientsWithUpper(export)  // read from disk once, outside the state lock
            let refusedAt: Int? = self.state.withLock { state in
                var uppers = state.uppers[export.exportID] ?? []
                if uppers.contains(key.clientKey) { return nil }
                if uppers.count >= limit { return uppers.count }
                uppers.insert(key.clientKey)
                state.uppers[export.exportID] = uppers
                return nil
            }
            if let count = refusedAt {
                throw .clientLimitReached(
                    "export \(export.path) has \(count) client upper layers, its max_clients; raise max_clients in its [[export]] table (or [server]), or free one with `strata client reset KEY`"
                )
            }
            reservedUpper = true
        }
        let identityDirectory = ExportRegistry.identityDirectory(
            stateDirectory: stateDirectory, exportID: export.exportID, version: key.version)
        // A new client's upper: from a spare made for these very lowers, if one is ready.
        let spare = reservedUpper ? self.takeSpareUpper(export: export, version: key.version) : nil
        if reservedUpper { self.noteUpperMade() }
        defer { if let spare { self.returnSpareUpper(spare, export: export, version: key.version) } }
        do {
            if let upper {
                // A spare is renamed into place as the upper: no directory of its own first (a rename over an empty
                // directory frees that one again, in the directory every first MNT renames in).
                if spare == nil {
                    try FileManager.default.createDirectory(
                        atPath: upper, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                }
            } else {
                try FileManager.default.createDirectory(
                    atPath: identityDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]
                )
            }
        } catch {
            if reservedUpper { self.state.withLock { _ = $0.uppers[export.exportID]?.remove(key.clientKey) } }
            throw .layerUnavailable("cannot create \(upper ?? identityDirectory): \(error.localizedDescription)")
        }
        if upper != nil, export.hasPerClientUpper {
            self.state.withLock { _ = $0.uppers[export.exportID]?.insert(key.clientKey) }
        }
        let shared = self.sharedIdentities(
            export: export, version: key.version, lowers: lowers, directory: identityDirectory)
        do {
            // Each cached object may hold a descriptor per layer. A fleet has one namespace per
            // client, so those get a smaller cache: 100 clients × 64 × 3 layers stays far below
            // the descriptor limit the server raises itself to at start. Their cached listings
            // too (`perClientListingEntries`).
            return try UnionNamespace(
                upper: upper, lowers: lowers, stateDirectory: identityDirectory,
                cachedObjects: export.hasPerClientUpper ? 64 : 256,
                cachedListingEntries: export.hasPerClientUpper
                    ? Self.perClientListingEntries : UnionNamespace.defaultCachedListingEntries,
                logger: self.logger.with(["export": "\(export.path)", "client": "\(key.clientKey)"]),
                hooks: self.namespaceHooks, sharedIdentities: shared, spareUpper: spare)
        } catch {
            let detail = self.layerProblem(export: export, error: error)
            self.logger.error(
                "cannot open layers: \(detail)",
                metadata: [
                    "export": "\(export.path)", "client": "\(key.clientKey)", "upper": "\(upper ?? "-")",
                    "error": "\(error)",
                ])
            throw .layerUnavailable(detail)
        }
    }

    /// What the first MNT of a new client would otherwise do once for the whole server, done before the server
    /// listens: the empty sidecar every new upper is copied from, and the shared identity store of the version a new
    /// client of each per-client export is placed on. When a room powers on, the first MNTs queued behind both (the
    /// store's open held every other open of the export meanwhile). A failure here is not fatal: the first MNT tries
    /// again, and reports it.
    public func prepareForFirstMounts() {
        let (exports, stateDirectory) = self.state.withReadLock {
            ($0.configuration.exports.filter(\.hasPerClientUpper), $0.configuration.server.stateDirectory)
        }
        guard !exports.isEmpty else { return }
        do {
            try FileManager.default.createDirectory(
                atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try UnionNamespace.prepareUpperCreation(scratch: stateDirectory)
        } catch {
            self.logger.warning(
                "cannot prepare the sidecar of new uppers ahead; the first client's MNT makes it",
                metadata: ["state_dir": "\(stateDirectory)", "error": "\(error)"])
        }
        for export in exports {
            let (version, lowers) = self.newClientPlacement(export)
            _ = self.sharedIdentities(
                export: export, version: version, lowers: lowers,
                directory: ExportRegistry.identityDirectory(
                    stateDirectory: stateDirectory, exportID: export.exportID, version: version))
        }
        self.findSpareUppersOnDisk()
    }

    /// The lower identities shared by every client of `export` on `version` (and its read-only namespace), opened on
    /// first need; nil for an export without per-client uppers. A store that cannot be opened is logged and the
    /// clients allocate lower fileids in their own uppers, as before shared stores.
    func sharedIdentities(
        export: ExportConfiguration, version: Int, lowers: [String], directory: String
    ) -> SharedIdentities? {
        guard export.hasPerClientUpper else { return nil }
        let key = NamespaceKey(exportID: export.exportID, clientKey: "", version: version)
        return self.sharedIdentityStores.withLock { stores -> SharedIdentities? in
            if let known = stores[key] { return known }
            do {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                let store = try SharedIdentities(
                    directory: directory, lowers: lowers, version: version,
                    logger: self.logger.with(["export": "\(export.path)"]))
                stores[key] = store
                return store
            } catch {
                self.logger.error(
                    "cannot open the shared identity store: each client numbers the lower objects in its own upper",
                    metadata: ["export": "\(export.path)", "directory": "\(directory)", "error": "\(error)"])
                return nil
            }
        }
    }

    /// Closes the shared identity stores of `exportID` whose version is not in `keeping` (all of them when nil).
    /// Their namespaces must be closed already.
    func closeSharedIdentities(exportID: UInt32? = nil, keeping: Set<Int>? = nil) {
        let closing = self.sharedIdentityStores.withLock { stores -> [SharedIdentities] in
            let keys = stores.keys.filter {
                (exportID == nil || $0.exportID == exportID) && !(keeping?.contains($0.version) ?? false)
            }
            return keys.compactMap { stores.removeValue(forKey: $0) }
        }
        for store in closing { store.close() }
    }

    /// Client keys with an upper layer of the per-client `export`, read from disk once.
    func clientsWithUpper(_ export: ExportConfiguration) -> Set<String> {
        if let known = self.state.withReadLock({ $0.uppers[export.exportID] }) { return known }
        let onDisk = Set(ExportRegistry.clientKeysOnDisk(template: export.upper ?? ""))
        return self.state.withLock { state in
            if let known = state.uppers[export.exportID] { return known }
            state.uppers[export.exportID] = onDisk
            return onDisk
        }
    }

    // MARK: Closing

    /// Takes `keys` out of the table and marks them closing; `close(_:)` must follow, outside the
    /// state lock (closing waits for the calls running in the namespace).
    func removeNamespaces(_ keys: [NamespaceKey], from state: inout State) -> [(NamespaceKey, UnionNamespace)] {
        var removed: [(NamespaceKey, UnionNamespace)] = []
        for key in keys {
            guard let open = state.namespaces.removeValue(forKey: key) else { continue }
            self.closingKeys.begin(key)
            state.closedStatistics.add(open.namespace.statistics)
            state.closedChangeStatistics.add(open.namespace.changeStatistics)
            removed.append((key, open.namespace))
        }
        return removed
    }

    /// Closes namespaces taken out by `removeNamespaces`; their keys may be opened again after.
    func close(_ namespaces: [(NamespaceKey, UnionNamespace)], keepingClosing: Bool = false) {
        for (key, namespace) in namespaces {
            namespace.close()
            if !keepingClosing { self.closingKeys.end(key) }
        }
    }

    /// Closes namespaces unused for `policy.idleSeconds`, those whose clients have unmounted and
    /// that are unused for `policy.unmountedIdleSeconds`, and, beyond `policy.maxOpen`, the least
    /// recently used (never one used in the last `policy.minimumIdleSeconds`). Returns how many.
    @discardableResult
    public func closeIdleNamespaces() -> Int {
        let now = self.clock()
        let policy = self.policy
        let closing = self.state.withLock { state -> [(NamespaceKey, UnionNamespace)] in
            var chosen: Set<NamespaceKey> = []
            var candidates: [(key: NamespaceKey, lastUsed: Double)] = []
            for (key, open) in state.namespaces {
                let idle = now - open.lastUsed
                guard idle >= policy.minimumIdleSeconds else { continue }
                if idle >= policy.idleSeconds || (idle >= policy.unmountedIdleSeconds && !self.isMounted(key, state)) {
                    chosen.insert(key)
                } else {
                    candidates.append((key, open.lastUsed))
                }
            }
            let excess = state.namespaces.count - chosen.count - policy.maxOpen
            if excess > 0 {
                for candidate in candidates.sorted(by: { $0.lastUsed < $1.lastUsed }).prefix(excess) {
                    chosen.insert(candidate.key)
                }
            }
            return self.removeNamespaces(Array(chosen), from: &state)
        }
        if !closing.isEmpty {
            self.logger.debug("closing idle namespaces", metadata: ["count": "\(closing.count)"])
        }
        self.close(closing)
        return closing.count
    }

    /// True if the mount table holds a mount the namespace `key` serves.
    private func isMounted(_ key: NamespaceKey, _ state: State) -> Bool {
        guard let export = state.exportsByID[key.exportID] else { return false }
        return state.mounts.contains {
            $0.directory == export.path && (key.clientKey.isEmpty || $0.clientKey == key.clientKey)
        }
    }

    /// Number of open namespaces.
    public var openNamespaceCount: Int { self.state.withReadLock { $0.namespaces.count } }

    /// Looks for idle namespaces every `policy.sweepSeconds` until `closeAll()`, running the
    /// closes through `run` (the server's thread pool: a close waits for calls in flight).
    public func startClosingIdleNamespaces(run: @escaping @Sendable (@escaping @Sendable () -> Void) async -> Void) {
        let seconds = self.policy.sweepSeconds
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(seconds))
                guard let self, !Task.isCancelled else { return }
                await run {
                    self.closeIdleNamespaces()
                    self.topUpSpareUppersIfQuiet()
                }
            }
        }
        self.sweeper.withLock { $0 = task }
    }
}
