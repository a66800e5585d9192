import Foundation
import Union

/// Reload (SIGHUP), statistics over every namespace, and shutdown.
extension ExportRegistry {
    /// Applies a new configuration (SIGHUP): new exports appear, removed ones refuse new MNTs
    /// and their handles go stale (their namespaces are closed), changed client options apply
    /// to the next call because rules are read per call.
    ///
    /// - Throws: `ConfigError` naming `export[N].id`, without applying anything, when the new
    ///   file would change the identifier of an export being served: every handle its clients
    ///   hold would go stale (a diskless client's root file system would vanish).
    /// An export that can have image versions (a per-client upper, or none) whose lowers change
    /// in the file is not swapped under its clients: the new lowers are published as its next
    /// image version (its current lowers becoming version 1 if it had no image), and each client
    /// moves at its next mount. Returns a line for each version published.
    @discardableResult
    public func reload(_ newConfiguration: Configuration) throws(ConfigError) -> [String] {
        var configuration = newConfiguration
        let (running, stateDirectory, recorded) = self.state.withLock {
            ($0.configuration.exports, $0.configuration.server.stateDirectory, $0.exportIDs)
        }
        var exportIDs = recorded
        exportIDs.assign(&configuration)
        for (index, export) in configuration.exports.enumerated() {
            guard let served = running.first(where: { $0.path == export.path }), served.exportID != export.exportID
            else { continue }
            throw ConfigError(
                key: "export[\(index)].id", value: export.id.map { "\($0)" } ?? "(none)",
                allowed:
                    "export \"\(export.path)\" is served with id \(served.exportID); changing it would make every file handle its clients hold stale: set id = \(served.exportID), or restart the server to change it"
            )
        }
        if exportIDs != recorded {
            do {
                try exportIDs.save(stateDirectory: stateDirectory)
            } catch {
                self.logger.error(
                    "cannot record export identifiers",
                    metadata: ["file": "\(ExportIDTable.path(stateDirectory))", "error": "\(error)"])
            }
        }
        // Lowers changed in the file: published as a version before the new configuration is
        // installed, so no call sees the new lowers outside a version.
        var published: [String] = []
        for export in configuration.exports where ExportRegistry.isVersionable(export) {
            guard let served = running.first(where: { $0.exportID == export.exportID }),
                ExportRegistry.isVersionable(served)
            else { continue }
            let image = self.state.withReadLock { $0.images[export.exportID] }
            guard export.lowers != (image?.configuredLowers ?? served.lowers) else { continue }
            do {
                if let version = try self.publishConfigured(export: export, running: served) {
                    published.append(
                        "export \(export.path): lowers published as image version \(version.number); mounted clients move at their next mount"
                    )
                } else {
                    published.append(
                        "export \(export.path): lowers are those of its newest image version; nothing published")
                }
            } catch {
                throw ConfigError(
                    key: "export[\(configuration.exports.firstIndex { $0.path == export.path } ?? 0)].lowers",
                    value: export.lowers.joined(separator: ", "),
                    allowed: "layers that can be published as a new image version: \(error)")
            }
        }
        // Opens are held off while the table changes, so none finishes with the old layers.
        let closing: [(NamespaceKey, UnionNamespace)] = self.openingLock.exclusively {
            self.state.withLock { state in
                var exportsByID: [UInt32: ExportConfiguration] = [:]
                for export in configuration.exports { exportsByID[export.exportID] = export }
                var dropped: [(NamespaceKey, UnionNamespace)] = []
                for (key, open) in state.namespaces {
                    let old = state.exportsByID[key.exportID]
                    let new = exportsByID[key.exportID]
                    // A namespace survives only if its export still exists with the same layers
                    // (the lowers of a versioned export are those of the namespace's version).
                    let isVersioned =
                        new.map { state.images[$0.exportID] != nil && ExportRegistry.isVersionable($0) } ?? false
                    if new == nil || (old?.lowers != new?.lowers && !isVersioned) || old?.upper != new?.upper {
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
        return published
    }

    /// Copy-ups and whiteouts of every namespace since the server started.
    public var unionStatistics: UnionStatistics {
        self.state.withReadLock { state in
            var total = state.closedStatistics
            for open in state.namespaces.values { total.add(open.namespace.statistics) }
            return total
        }
    }

    /// How the changes of every namespace ran since the server started (lock waits, batches, flushes).
    public var changeStatistics: ChangeStatistics {
        self.state.withReadLock { state in
            var total = state.closedChangeStatistics
            for open in state.namespaces.values { total.add(open.namespace.changeStatistics) }
            return total
        }
    }

    /// Closes every namespace (server shutdown).
    public func closeAll() {
        self.sweeper.withLock { task in
            task?.cancel()
            task = nil
        }
        self.spareUppers.withLock { $0.closed = true }
        let all = self.state.withLock { state in self.removeNamespaces(Array(state.namespaces.keys), from: &state) }
        self.close(all)
        self.closeSharedIdentities()
    }
}
