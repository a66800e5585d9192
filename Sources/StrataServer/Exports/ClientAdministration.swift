import Foundation
import Union

/// One client of a per-client export, as `strata clients` shows it.
public struct ClientReport: Sendable, Codable, Equatable {
    public var key: String
    public var export: String
    public var upper: String
    public var sizeBytes: UInt64
    /// Seconds since the epoch of the last call admitted for this client since the server
    /// started, nil if none.
    public var lastSeen: Double?
    public var isMounted: Bool
    /// The image version the client is on; nil when its export has no image versions.
    public var version: Int?
}

/// Why an administration request failed, with what to do about it.
public struct AdministrationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension ExportRegistry {
    /// Every client key that has an upper layer on disk under a per-client export.
    public func clients() -> [ClientReport] {
        let (configuration, lastSeen, mounts, images) = self.state.withReadLock {
            ($0.configuration, $0.lastSeen.mapValues(\.seconds), $0.mounts, $0.images)
        }
        var reports: [ClientReport] = []
        for export in configuration.exports where export.hasPerClientUpper {
            for key in ExportRegistry.clientKeysOnDisk(template: export.upper ?? "") {
                let upper = self.upperPath(export: export, clientKey: key) ?? ""
                reports.append(
                    ClientReport(
                        key: key, export: export.path, upper: upper, sizeBytes: diskUsage(of: upper),
                        lastSeen: lastSeen[key],
                        isMounted: mounts.contains { $0.clientKey == key && $0.directory == export.path },
                        version: images[export.exportID]?.placement(of: key)))
            }
        }
        return reports.sorted { ($0.export, $0.key) < ($1.export, $1.key) }
    }

    /// Re-images a client: its upper layer of `exportPath` (or of every per-client export when
    /// nil) is moved aside in one rename and deleted, its namespace closed, and its reset
    /// generation bumped so every handle it holds answers NFS3ERR_STALE. Its next MNT creates a
    /// fresh, empty upper: the pristine image. Safe while the server runs: calls of the client
    /// that need its namespace meanwhile (a re-mount) wait until the old upper is moved aside,
    /// so none opens the layer about to be deleted.
    public func resetClient(key rawKey: String, exportPath: String?) throws -> [String] {
        let key = sanitizedClientKey(rawKey)
        let configuration = self.configuration
        let exports = configuration.exports.filter {
            $0.hasPerClientUpper && (exportPath == nil || $0.path == exportPath)
        }
        guard !exports.isEmpty else {
            throw AdministrationError(
                "no per-client export \(exportPath.map { "named \($0)" } ?? "") in the configuration; check [[export]] upper = \"...{client}...\""
            )
        }
        var resetUppers: [String] = []
        for export in exports {
            guard let upper = self.upperPath(export: export, clientKey: key),
                FileManager.default.fileExists(atPath: upper)
            else { continue }
            // No image version move while the client is reset: its namespace key (which names
            // its version) must stay the one held off below until the upper is moved aside.
            let aside = try self.imagesLock.withLock { _ throws -> String in
                let version =
                    self.state.withReadLock { state in
                        state.exportsByID[export.exportID].flatMap { self.image(of: $0, in: state) }?.placement(of: key)
                    } ?? 1
                let namespaceKey = NamespaceKey(exportID: export.exportID, clientKey: key, version: version)
                // Crash order: the generation is bumped and saved first, so from here on the
                // client's old handles are stale even if a crash interrupts the rest (a stale
                // handle is the intended outcome of a reset). Opens are held off while the
                // namespace is taken out, so one in progress finishes first and is closed with
                // it, and later ones wait for `closingKeys`.
                let removed = self.openingLock.exclusively {
                    self.state.withLock { state in
                        state.generations[key, default: 0] += 1
                        self.closingKeys.begin(namespaceKey)
                        return self.removeNamespaces([namespaceKey], from: &state)
                    }
                }
                defer { self.closingKeys.end(namespaceKey) }
                self.persistLock.withLock { _ in
                    let (generations, stateDirectory) = self.state.withLock {
                        ($0.generations, $0.configuration.server.stateDirectory)
                    }
                    do {
                        try ExportRegistry.saveGenerations(generations, stateDirectory: stateDirectory)
                    } catch {
                        // The reset goes on: the new upper has a new handle key, so the client's
                        // old handles are refused even if the generation is lost.
                        self.logger.error(
                            "cannot record the client's reset generation",
                            metadata: ["client": "\(key)", "error": "\(error)"])
                    }
                }
                self.resetHook.current?("closing")
                // Waits for calls running in it (a copy-up in flight ends with NFS3ERR_STALE).
                self.close(removed, keepingClosing: true)
                self.resetHook.current?("closed")
                let aside: String
                do {
                    aside = try LayerTools.moveAside(layer: upper)
                } catch {
                    throw AdministrationError("cannot move \(upper) aside: \(error)")
                }
                self.state.withLock { _ = $0.uppers[export.exportID]?.remove(key) }
                // A remount may create the fresh upper from here on, while the old one is deleted.
                return aside
            }
            do {
                try LayerTools.deleteDiscarded(aside)
            } catch {
                self.logger.error(
                    "client reset: the old upper is moved aside but could not be deleted; delete it by hand",
                    metadata: ["client": "\(key)", "directory": "\(aside)", "error": "\(error)"])
            }
            resetUppers.append(upper)
        }
        self.changeMountTable { $0.removeAll { $0.clientKey == key } }
        self.logger.notice(
            "client reset", metadata: ["client": "\(key)", "uppers": "\(resetUppers.joined(separator: ","))"])
        return resetUppers
    }

    /// The upper layer directory of client `key` in the per-client export `exportPath` (the
    /// first per-client export when nil), for `layer promote`.
    public func upperDirectory(forClient rawKey: String, exportPath: String?) throws -> String {
        let key = sanitizedClientKey(rawKey)
        guard
            let export = self.configuration.exports.first(where: {
                $0.hasPerClientUpper && (exportPath == nil || $0.path == exportPath)
            }),
            let upper = self.upperPath(export: export, clientKey: key)
        else {
            throw AdministrationError("no per-client export \(exportPath ?? "") in the configuration")
        }
        guard FileManager.default.fileExists(atPath: upper) else {
            throw AdministrationError(
                "client \(key) has no upper layer at \(upper) (it has never mounted \(export.path))")
        }
        return upper
    }

    /// Client keys whose upper directories exist for a template such as
    /// `/srv/strata/clients/{client}` or `/srv/{client}-upper/layer`.
    static func clientKeysOnDisk(template: String) -> [String] {
        let components = template.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let index = components.firstIndex(where: { $0.contains(ExportConfiguration.clientPlaceholder) }) else {
            return []
        }
        let parent = components[..<index].joined(separator: "/")
        let pattern = components[index]
        let rest = components[(index + 1)...].joined(separator: "/")
        let parts = pattern.components(separatedBy: ExportConfiguration.clientPlaceholder)
        let prefix = parts.first ?? ""
        let suffix = parts.count > 1 ? parts[1] : ""
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: parent.isEmpty ? "/" : parent) else {
            return []
        }
        return entries.compactMap { entry in
            guard entry.hasPrefix(prefix), entry.hasSuffix(suffix), entry.count > prefix.count + suffix.count,
                !entry.contains(".reset-")
            else { return nil }
            let key = String(entry.dropFirst(prefix.count).dropLast(suffix.count))
            let full = "\(parent)/\(entry)" + (rest.isEmpty ? "" : "/\(rest)")
            return FileManager.default.fileExists(atPath: full) && sanitizedClientKey(key) == key ? key : nil
        }.sorted()
    }
}

/// Bytes allocated under `path` (st_blocks × 512), not following symlinks.
func diskUsage(of path: String) -> UInt64 {
    var total: UInt64 = 0
    guard let enumerator = FileManager.default.enumerator(atPath: path) else { return 0 }
    for case let relative as String in enumerator {
        var info = stat()
        if lstat("\(path)/\(relative)", &info) == 0 {
            total += UInt64(max(0, info.st_blocks)) * 512
        }
    }
    return total
}
