import Basics
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
        /// The image version whose lowers it stacks (1 for an export without an image: its
        /// configured lowers, which become version 1 if it ever gets one).
        var version: Int = 1
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
        var closedChangeStatistics = ChangeStatistics()
        /// The identifiers handed out to exports (`state_dir/export-ids`).
        var exportIDs = ExportIDTable()
        /// Per-client export → client keys with an upper layer on disk (read from disk on first
        /// need), for `max_clients`.
        var uppers: [UInt32: Set<String>] = [:]
        /// The versions of exports with an image (`state_dir/images.json`).
        var images = ImageTable()
        /// Layers found as fingerprinted since the server started (or fingerprinted by it).
        var verifiedLayers: Set<LayerFingerprint> = []
    }

    /// Every call reads it (shared lock); opens, closes, reload and mounts change it.
    let state: ReadWriteLocked<State>
    /// Held while a namespace is opened (per namespace, see `OpeningLock`), and exclusively
    /// by what takes namespaces out of the table.
    let openingLock = OpeningLock()
    /// Namespaces being closed (reset, idle, reload): opens of these wait until they are.
    let closingKeys = ClosingKeys()
    /// The lower identities shared by the clients of each version of a per-client export (`SharedIdentities`), by
    /// export and version (client key ""), opened on first need and kept until shutdown or gc.
    let sharedIdentityStores = Locked<[NamespaceKey: SharedIdentities]>([:])
    /// Uppers made ahead for clients not seen yet (`SpareUppers.swift`).
    let spareUppers = Locked(SparePools())
    /// Orders writes of the small state files (mount table, reset generations).
    let persistLock = Locked(())
    /// Changes made to the mount table, and how many of them the file on disk holds (`changeMountTable`).
    let mountTableChanges = Atomic<UInt64>(0)
    let mountTableWritten = Atomic<UInt64>(0)
    /// A caller of `changeMountTable` is writing the file (and writes every change made meanwhile).
    let mountTableWriting = Atomic<Bool>(false)
    /// Held across a change of the image versions: from reading the table, through writing
    /// `images.json`, to installing it (publish, rollback, gc, a client's move). Taken before
    /// `openingLock` and the state lock, never while holding them.
    let imagesLock = Locked(())
    let logger: Logger
    let policy: NamespacePolicy
    /// Monotonic seconds (tests pass their own).
    let clock: @Sendable () -> Double
    /// Tests: called at named steps of a reset ("closed": the old namespace is closed, its
    /// upper not yet moved aside).
    let resetHook = Locked<(@Sendable (String) -> Void)?>(nil)
    /// Tests: the hooks every namespace this registry opens gets (`UnionHooks`); nil in the server.
    let namespaceHooks: UnionHooks?
    let sweeper = Locked<Task<Void, Never>?>(nil)

    public init(
        configuration: Configuration, logger: Logger, policy: NamespacePolicy = NamespacePolicy(),
        clock: @escaping @Sendable () -> Double = monotonicSeconds, namespaceHooks: UnionHooks? = nil
    ) {
        self.namespaceHooks = namespaceHooks
        let stateDirectory = configuration.server.stateDirectory
        var configuration = configuration
        var exportIDs = ExportIDTable.load(stateDirectory: stateDirectory, logger: logger)
        let before = exportIDs
        for (index, recorded) in exportIDs.assign(&configuration) {
            let export = configuration.exports[index]
            logger.warning(
                "export identifier changed: file handles clients hold from before are stale",
                metadata: [
                    "export": "\(export.path)", "key": "export[\(index)].id", "was": "\(recorded)",
                    "now": "\(export.exportID)",
                ])
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
        initial.mounts = ExportRegistry.loadMountTable(stateDirectory: stateDirectory, logger: logger)
        initial.generations = ExportRegistry.loadGenerations(stateDirectory: stateDirectory, logger: logger)
        initial.images = ImageTable.load(stateDirectory: stateDirectory, logger: logger)
        self.state = ReadWriteLocked(initial)
        self.logger = logger
        self.policy = policy
        self.clock = clock
        self.startImages()
    }

    public var configuration: Configuration { self.state.withReadLock { $0.configuration } }

    public var exports: [ExportConfiguration] { self.state.withReadLock { $0.configuration.exports } }

    /// The path of the export with identifier `exportID` (bytes 1-3 of its handles).
    public func exportPath(exportID: UInt32) -> String? {
        self.state.withReadLock { $0.exportsByID[exportID]?.path }
    }

    public var mountTable: [MountRecord] { self.state.withReadLock { $0.mounts } }
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
