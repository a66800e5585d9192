import Basics
import Foundation
import Logging
import Union

/// Image versions of an export's lowers: publish, rollback, gc, each client's move at its MNT,
/// and the check of a version's layers against their fingerprints before they are served.
///
/// A version is named in file handles through the client tag (bytes 4-7, `clientTag`):
/// version 1 keeps the tag an export had before it had an image, so handles clients hold
/// survive the first publish; later versions fold their number into the tag. A handle whose tag
/// names no version the caller is on is refused (NFS3ERR_STALE for a version that existed),
/// and the union below checks the object's own tag under that namespace's key: a handle of a
/// removed version never resolves to another file.
extension ExportRegistry {
    /// Whether `export` can have versions: a per-client upper (each client moves on its own) or
    /// no upper. A shared upper cannot sit on two versions at once.
    static func isVersionable(_ export: ExportConfiguration) -> Bool {
        export.upper == nil || export.hasPerClientUpper
    }

    /// The image of `export`, nil if it has none (or cannot have one).
    func image(of export: ExportConfiguration, in state: State) -> ExportImage? {
        ExportRegistry.isVersionable(export) ? state.images[export.exportID] : nil
    }

    /// The `clientTag` of the handles of the shared namespace (no per-client upper) of `version`.
    func sharedTag(version: Int) -> UInt32 {
        guard version > 1 else { return 0 }
        return Self.fold(FNV1a64.hash("#v\(version)".utf8))
    }

    static func fold(_ hash: UInt64) -> UInt32 {
        let folded = UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
        return folded == 0 ? 1 : folded
    }

    /// Where the shared namespace of `version` keeps its identities (and so its handle key):
    /// version 1 where an export without an image keeps them, later ones beside it.
    static func identityDirectory(stateDirectory: String, exportID: UInt32, version: Int) -> String {
        let base = "\(stateDirectory)/exports/\(String(exportID, radix: 16))"
        return version > 1 ? "\(base)/v\(version)" : base
    }

    // MARK: Start

    /// At start: publishes lowers changed in the configuration file since the server last
    /// compared them, and deletes identity stores of versions a gc removed (a crash between
    /// writing the table and deleting them).
    func startImages() {
        for export in self.exports where ExportRegistry.isVersionable(export) {
            guard let image = self.state.withReadLock({ $0.images[export.exportID] }) else { continue }
            if image.configuredLowers != export.lowers {
                do {
                    _ = try self.publishConfigured(export: export)
                } catch {
                    self.logger.error(
                        "cannot publish the lowers of the configuration file as a new image version; clients stay on theirs",
                        metadata: ["export": "\(export.path)", "error": "\(error)"])
                }
            }
            self.removeIdentityStores(of: export, keeping: Set(image.versions.map(\.number)))
        }
    }

    /// Deletes the shared identity stores of `export`'s versions not in `keeping`.
    func removeIdentityStores(of export: ExportConfiguration, keeping: Set<Int>) {
        self.closeSharedIdentities(exportID: export.exportID, keeping: keeping)
        let stateDirectory = self.configuration.server.stateDirectory
        let base = ExportRegistry.identityDirectory(
            stateDirectory: stateDirectory, exportID: export.exportID, version: 1)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        for entry in entries where entry.hasPrefix("v") {
            guard let number = Int(entry.dropFirst()), number > 1, !keeping.contains(number) else { continue }
            do {
                try LayerTools.deleteDiscarded("\(base)/\(entry)")
            } catch {
                self.logger.error(
                    "cannot delete the identity store of a removed image version",
                    metadata: ["directory": "\(base)/\(entry)", "error": "\(error)"])
            }
        }
    }

    // MARK: Publish, rollback, gc

    /// The export named `path`, for the image commands.
    func versionableExport(_ path: String) throws -> ExportConfiguration {
        let exports = self.exports
        guard let export = exports.first(where: { $0.path == path }) else {
            throw AdministrationError(
                "no export \(path) (exports: \(exports.map(\.path).joined(separator: ", "))); `strata exports` lists them"
            )
        }
        guard ExportRegistry.isVersionable(export) else {
            throw AdministrationError(
                "export \(path) has one upper shared by every client, which cannot sit on two image versions at once: give each client its own (upper = \".../{client}\") or none"
            )
        }
        return export
    }

    /// `strata image publish`: makes `lowers` (top-most first) the next version of the export
    /// `exportPath`, for clients' next mounts. Mounted clients stay on theirs.
    public func publish(exportPath: String, lowers: [String]) throws -> ImageVersion {
        try self.publish(export: try self.versionableExport(exportPath), lowers: lowers, fromConfiguration: false)
    }

    /// The `lowers` of `export` in the configuration file, which differ from those last
    /// compared: published as a new version, unless they are the newest version's already (the
    /// operator wrote a published stack into the file): then only recorded. Returns the
    /// version published, nil if none was.
    func publishConfigured(export: ExportConfiguration, running: ExportConfiguration? = nil) throws -> ImageVersion? {
        let adopted = try self.imagesLock.withLock { _ throws -> Bool in
            let (current, stateDirectory) = self.state.withReadLock {
                ($0.images, $0.configuration.server.stateDirectory)
            }
            guard var image = current[export.exportID], image.version(image.newest)?.lowers == export.lowers else {
                return false
            }
            image.configuredLowers = export.lowers
            var table = current
            table[export.exportID] = image
            try self.install(table, stateDirectory: stateDirectory)
            return true
        }
        if adopted { return nil }
        return try self.publish(export: running ?? export, lowers: export.lowers, fromConfiguration: true)
    }

    /// Publishes `lowers` as a new version of `export`. The export's first publish makes its
    /// current lowers version 1 (its mounted clients are on it) and `lowers` version 2.
    /// `fromConfiguration`: the lowers come from the configuration file, which is recorded as
    /// compared.
    func publish(export: ExportConfiguration, lowers: [String], fromConfiguration: Bool) throws -> ImageVersion {
        guard !lowers.isEmpty else {
            throw AdministrationError("publish needs at least one lower layer: --lowers DIR...")
        }
        for lower in lowers {
            var info = stat()
            guard lower.hasPrefix("/") else { throw AdministrationError("lower layer \(lower): give an absolute path") }
            guard stat(lower, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw AdministrationError("lower layer \(lower) is not a directory; create it or fix the path")
            }
            // As the configuration checks: a published layer must be where nobody writes.
            let configuration = self.configuration
            if isSameOrInside(lower, configuration.server.stateDirectory)
                || isSameOrInside(configuration.server.stateDirectory, lower)
            {
                throw AdministrationError(
                    "lower layer \(lower) overlaps server.state_dir \(configuration.server.stateDirectory); publish a directory outside it"
                )
            }
            for other in configuration.exports {
                guard let upper = other.upper else { continue }
                let root = upperDirectoryRoot(upper)
                if isSameOrInside(lower, root) || isSameOrInside(root, lower) {
                    throw AdministrationError(
                        "lower layer \(lower) overlaps the upper \(upper) of export \(other.path), where clients write; publish a directory outside every upper"
                    )
                }
            }
        }
        // The walks are slow on a large image: outside every lock (MNTs take `imagesLock`).
        let fingerprints = try lowers.map { try LayerTools.fingerprint(layerDirectory: $0) }
        let hasImage = self.state.withReadLock { $0.images[export.exportID] != nil }
        let firstLayers = hasImage ? nil : try export.lowers.map { try LayerTools.fingerprint(layerDirectory: $0) }
        let published = try self.imagesLock.withLock { _ throws -> ImageVersion in
            let (current, stateDirectory) = self.state.withReadLock {
                ($0.images, $0.configuration.server.stateDirectory)
            }
            var table = current
            var image: ExportImage
            if let existing = table[export.exportID] {
                image = existing
            } else {
                let first = ImageVersion(
                    number: 1,
                    layers: try firstLayers ?? export.lowers.map { try LayerTools.fingerprint(layerDirectory: $0) },
                    publishedAt: Date().timeIntervalSince1970)
                image = ExportImage(versions: [first], newest: 1, nextNumber: 2, configuredLowers: export.lowers)
            }
            let version = ImageVersion(
                number: image.nextNumber, layers: fingerprints, publishedAt: Date().timeIntervalSince1970)
            image.versions.append(version)
            image.newest = version.number
            image.nextNumber += 1
            if fromConfiguration { image.configuredLowers = lowers }
            table[export.exportID] = image
            try self.install(table, stateDirectory: stateDirectory) { state in
                for layer in fingerprints + (image.versions.first?.layers ?? []) { state.verifiedLayers.insert(layer) }
            }
            return version
        }
        self.logger.notice(
            "image version published; mounted clients stay on theirs, next mounts get it",
            metadata: [
                "export": "\(export.path)", "version": "\(published.number)",
                "lowers": "\(lowers.joined(separator: ","))",
            ])
        return published
    }

    /// Writes `table` to `images.json` and, once it is there, makes it the running one.
    /// Caller holds `imagesLock`.
    func install(_ table: ImageTable, stateDirectory: String, also: (inout State) -> Void = { _ in }) throws {
        do {
            try table.save(stateDirectory: stateDirectory)
        } catch {
            self.logger.error("cannot record the image versions", metadata: ["error": "\(error)"])
            throw AdministrationError("cannot record the image versions: \(error); nothing changed")
        }
        self.state.withLock { state in
            state.images = table
            also(&state)
        }
    }

    /// `strata image rollback`: makes version `to` (default: the one before the newest) the one
    /// next mounts get. Clients pinned elsewhere, and mounted clients, are not moved.
    public func rollback(exportPath: String, to requested: Int?) throws -> Int {
        let export = try self.versionableExport(exportPath)
        let target = try self.imagesLock.withLock { _ throws -> Int in
            let (current, stateDirectory) = self.state.withReadLock {
                ($0.images, $0.configuration.server.stateDirectory)
            }
            var table = current
            guard var image = table[export.exportID] else {
                throw AdministrationError(
                    "export \(exportPath) has no image versions yet; `strata image publish` makes them")
            }
            let numbers = image.versions.map(\.number)
            let target: Int
            if let requested {
                guard numbers.contains(requested) else {
                    throw AdministrationError(
                        "export \(exportPath) has no version \(requested) (versions: \(numbers.map(String.init).joined(separator: ", ")))"
                    )
                }
                target = requested
            } else {
                guard let older = numbers.filter({ $0 < image.newest }).max() else {
                    throw AdministrationError(
                        "export \(exportPath): no version older than \(image.newest) to roll back to")
                }
                target = older
            }
            image.newest = target
            table[export.exportID] = image
            try self.install(table, stateDirectory: stateDirectory)
            return target
        }
        self.logger.notice(
            "image rolled back: next mounts get this version",
            metadata: ["export": "\(exportPath)", "version": "\(target)"])
        return target
    }

    /// Client keys on each version of `export`: those placed on it, and, on the first version,
    /// the clients with an upper (or a mount) that never mounted since the export got an image.
    func clientsByVersion(_ export: ExportConfiguration, image: ExportImage) -> [Int: [String]] {
        var result: [Int: [String]] = [:]
        for (key, placement) in image.clients { result[placement.version, default: []].append(key) }
        var implicit = Set(
            self.state.withReadLock { $0.mounts.filter { $0.directory == export.path }.map(\.clientKey) })
        if export.hasPerClientUpper {
            implicit.formUnion(ExportRegistry.clientKeysOnDisk(template: export.upper ?? ""))
        }
        if let first = image.versions.first?.number {
            for key in implicit where image.clients[key] == nil { result[first, default: []].append(key) }
        }
        return result.mapValues { $0.sorted() }
    }

    /// `strata image gc`: removes the versions of `exportPath` (every export when nil) that no
    /// client is on or pinned to and that are not the newest; with `version`, only that one,
    /// refused with the clients using it. The table is written first, then the removed
    /// versions' identity stores deleted (a crash in between leaves them for the next start).
    public func collectGarbage(exportPath: String?, version: Int?) throws -> [CollectionReport] {
        let exports =
            try exportPath.map { [try self.versionableExport($0)] } ?? self.exports.filter(ExportRegistry.isVersionable)
        var reports: [CollectionReport] = []
        for export in exports {
            let report = try self.imagesLock.withLock { _ throws -> CollectionReport? in
                let (current, stateDirectory, pins) = self.state.withReadLock { state in
                    (state.images, state.configuration.server.stateDirectory, state.configuration.clientPins)
                }
                var table = current
                guard var image = table[export.exportID] else {
                    if exportPath != nil { throw AdministrationError("export \(export.path) has no image versions") }
                    return nil
                }
                let byVersion = self.clientsByVersion(export, image: image)
                var reasons: [Int: [String]] = [:]
                reasons[image.newest, default: []].append("newest")
                for (number, keys) in byVersion {
                    reasons[number, default: []].append("clients \(keys.joined(separator: ","))")
                }
                for (key, pin) in pins.sorted(by: { $0.key < $1.key }) {
                    reasons[pin, default: []].append("pinned by \(key)")
                }
                let candidates = version.map { [$0] } ?? image.versions.map(\.number)
                if let version {
                    guard image.version(version) != nil else {
                        throw AdministrationError("export \(export.path) has no version \(version)")
                    }
                    if let why = reasons[version] {
                        throw AdministrationError(
                            "version \(version) of \(export.path) is in use (\(why.joined(separator: "; "))); move its clients first (rollback, pin, or their next mount)"
                        )
                    }
                }
                let removed = candidates.filter { reasons[$0] == nil }
                image.versions.removeAll { removed.contains($0.number) }
                table[export.exportID] = image
                if !removed.isEmpty {
                    try self.install(table, stateDirectory: stateDirectory)
                    // Namespaces still open on a removed version (the shared one of read-only
                    // clients, idle) close; calls running in them finish first.
                    let closing = self.openingLock.exclusively {
                        self.state.withLock { state in
                            let keys = state.namespaces.keys.filter {
                                $0.exportID == export.exportID && removed.contains($0.version)
                            }
                            return self.removeNamespaces(Array(keys), from: &state)
                        }
                    }
                    self.close(closing)
                }
                self.removeIdentityStores(of: export, keeping: Set(image.versions.map(\.number)))
                return CollectionReport(
                    export: export.path, removed: removed,
                    kept: image.versions.map { "\($0.number): \(reasons[$0.number]?.joined(separator: "; ") ?? "")" })
            }
            if let report {
                if !report.removed.isEmpty {
                    self.logger.notice(
                        "image versions removed; their file handles are stale",
                        metadata: [
                            "export": "\(export.path)",
                            "versions": "\(report.removed.map(String.init).joined(separator: ","))",
                        ])
                }
                reports.append(report)
            }
        }
        return reports
    }

    // MARK: A client's move

    /// At MNT: moves `clientKey` to the version it is due (its pin, or the newest) if it is on
    /// another one: its namespace on the old version is closed (calls in it finish first), the
    /// move recorded, and the next open stacks its upper on the new version's lowers. Logs the
    /// move and the names its own changes hide in the new version.
    func moveIfDue(export: ExportConfiguration, clientKey: String) throws(CallRejection) {
        // Most exports have no image: their mounts never wait for the images lock.
        guard ExportRegistry.isVersionable(export), self.state.withReadLock({ $0.images[export.exportID] != nil })
        else { return }
        let outcome = try self.imagesLock.withLock {
            _ throws(CallRejection) -> (from: Int, to: Int, old: [String], new: [String])? in
            let (table, stateDirectory, pin) = self.state.withReadLock {
                ($0.images, $0.configuration.server.stateDirectory, $0.configuration.clientPins[clientKey])
            }
            guard var image = table[export.exportID] else { return nil }
            let target = pin ?? image.newest
            guard let newVersion = image.version(target) else {
                throw .layerUnavailable(
                    "client \(clientKey) is pinned to version \(target) of \(export.path), which has versions \(image.versions.map { String($0.number) }.joined(separator: ", ")); fix its pin in [clients]"
                )
            }
            let current = image.placement(of: clientKey)
            if image.clients[clientKey]?.version == target { return nil }
            let isMove = current != target
            image.clients[clientKey] = ClientPlacement(
                version: target, previous: isMove ? current : image.clients[clientKey]?.previous)
            var newTable = table
            newTable[export.exportID] = image
            do {
                try newTable.save(stateDirectory: stateDirectory)
            } catch {
                // Not recorded, not moved: it stays on the version it was on.
                self.logger.error(
                    "cannot record a client's image version; it stays on its version",
                    metadata: ["export": "\(export.path)", "client": "\(clientKey)", "error": "\(error)"])
                return nil
            }
            let oldKey = NamespaceKey(exportID: export.exportID, clientKey: clientKey, version: current)
            let newKey = NamespaceKey(exportID: export.exportID, clientKey: clientKey, version: target)
            // Opens of the new version wait until the old namespace (same upper) is closed.
            let removed = self.openingLock.exclusively {
                self.state.withLock { state in
                    state.images = newTable
                    guard isMove else { return [(NamespaceKey, UnionNamespace)]() }
                    self.closingKeys.begin(newKey)
                    return self.removeNamespaces([oldKey], from: &state)
                }
            }
            guard isMove else { return nil }
            self.close(removed)
            self.closingKeys.end(newKey)
            return (current, target, image.version(current)?.lowers ?? [], newVersion.lowers)
        }
        guard let outcome else { return }
        self.logger.notice(
            "client moves to image version \(outcome.to)",
            metadata: [
                "export": "\(export.path)", "client": "\(clientKey)", "from": "\(outcome.from)", "to": "\(outcome.to)",
            ])
        guard export.hasPerClientUpper, !outcome.old.isEmpty,
            let upper = self.upperPath(export: export, clientKey: clientKey),
            FileManager.default.fileExists(atPath: upper)
        else { return }
        do {
            let names = try LayerTools.conflicts(upper: upper, from: outcome.old, to: outcome.new)
            if !names.isEmpty {
                self.logger.warning(
                    "image conflicts: the client's own changes hide updates of the new version; `strata image conflicts` lists them",
                    metadata: [
                        "export": "\(export.path)", "client": "\(clientKey)", "to": "\(outcome.to)",
                        "names": "\(names.prefix(20).joined(separator: ","))\(names.count > 20 ? ",..." : "")",
                    ])
            }
        } catch {
            self.logger.error(
                "cannot compare the client's changes with the new image version",
                metadata: ["client": "\(clientKey)", "error": "\(error)"])
        }
    }

    // MARK: Serving a version

    /// Checks the layers of `version` of `export` against their fingerprints, each layer once
    /// per server run (versions share layers): a layer changed since it was published is
    /// refused, with what changed.
    func verify(export: ExportConfiguration, version: ImageVersion) throws(CallRejection) {
        let verified = self.state.withReadLock { $0.verifiedLayers }
        for layer in version.layers where !verified.contains(layer) {
            let change: String?
            do {
                change = try LayerTools.changes(since: layer)
            } catch {
                change = "\(error)"
            }
            if let change {
                let message =
                    "\(change) since version \(version.number) of \(export.path) was published; a published layer must not change: restore it, or publish the changed tree as a new version (strata image publish)"
                self.logger.error(
                    "refusing to serve a changed image layer",
                    metadata: ["export": "\(export.path)", "problem": "\(message)"])
                throw .layerUnavailable(message)
            }
            self.state.withLock { _ = $0.verifiedLayers.insert(layer) }
        }
    }
}
