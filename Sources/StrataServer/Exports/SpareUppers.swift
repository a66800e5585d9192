import Basics
import Foundation
import Union

/// Spare uppers (`spare_uppers` of a per-client export): uppers made whole ahead of time, under names no client key
/// can take, in the directory the clients' uppers are made in. A new client's first MNT takes one and renames it into
/// its place (`UnionNamespace.claimSpare`: one rename and one directory flush) instead of making its upper then (a
/// chain of five flushes and a new sidecar, on a thread a room of first MNTs keeps from the other calls). Docs/
/// CRASH-ORDER.md, "Spare uppers".
///
/// They are made before the server listens (the first start pays for them once: later starts find them on disk), and
/// again, after clients took some, when no client's upper was made for a sweep interval, so that making them never
/// competes with a room of clients booting. A spare is made for the lowers a new client is placed on (the export's
/// newest image version) and named after them; spares of other lowers, and any cut short by a crash, are deleted at
/// start. Spares are not client uppers: `max_clients`, `strata clients` and resets do not see them.
extension ExportRegistry {
    struct SpareKey: Hashable, Sendable {
        var exportID: UInt32
        var version: Int
    }

    /// Where the spares of an upper template go: the directory of its last component, which must hold `{client}`
    /// (and nothing above it may): a spare is renamed within that directory.
    static func spareLocation(upper: String?) -> (parent: String, prefix: String, suffix: String)? {
        guard let upper else { return nil }
        let placeholder = ExportConfiguration.clientPlaceholder
        var components = upper.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let last = components.popLast(), components.allSatisfy({ !$0.contains(placeholder) }) else { return nil }
        let parts = last.components(separatedBy: placeholder)
        guard parts.count == 2 else { return nil }
        let parent = components.joined(separator: "/")
        return (parent.isEmpty ? "/" : parent, parts[0], parts[1])
    }

    /// The start of the names of `export`'s spares for `lowers` on `version`: a leading "." after the template's
    /// prefix, which no client key has (`sanitizedClientKey`).
    static func spareStem(exportID: UInt32, version: Int, lowers: [String]) -> String {
        ".spare-\(String(exportID, radix: 16))-v\(version)-\(String(UnionNamespace.stackFingerprint(lowers), radix: 16))-"
    }

    /// The version and lowers a client not seen yet is placed on.
    func newClientPlacement(_ export: ExportConfiguration) -> (version: Int, lowers: [String]) {
        self.state.withReadLock { state -> (Int, [String]) in
            guard let image = self.image(of: export, in: state) else { return (1, export.lowers) }
            let number = image.placement(of: "")
            return (number, image.version(number)?.lowers ?? export.lowers)
        }
    }

    /// A spare for a new client of `export` on `version`, taken out of the pool; nil if there is none.
    func takeSpareUpper(export: ExportConfiguration, version: Int) -> String? {
        guard export.spareUppers > 0 else { return nil }
        return self.spareUppers.withLock { pools in
            pools.pool[SpareKey(exportID: export.exportID, version: version)]?.popLast()
        }
    }

    /// Gives back a spare `takeSpareUpper` gave that was not renamed into place (it is still there).
    func returnSpareUpper(_ path: String, export: ExportConfiguration, version: Int) {
        guard FileManager.default.fileExists(atPath: path) else { return }
        self.spareUppers.withLock {
            $0.pool[SpareKey(exportID: export.exportID, version: version), default: []].append(path)
        }
    }

    /// Spares ready now, per export (tests, `strata clients`).
    public func spareUpperCount(exportPath: String) -> Int {
        guard let export = self.exports.first(where: { $0.path == exportPath }) else { return 0 }
        let version = self.newClientPlacement(export).version
        return self.spareUppers.withLock { $0.pool[SpareKey(exportID: export.exportID, version: version)]?.count ?? 0 }
    }

    /// At start, before the server listens: the spares on disk are taken into the pools (those of other lowers, and
    /// those a crash cut short, deleted), then each pool is filled to its `spare_uppers`.
    func findSpareUppersOnDisk() {
        for export in self.exports where export.spareUppers > 0 || export.hasPerClientUpper {
            guard let location = Self.spareLocation(upper: export.upper) else { continue }
            let (version, lowers) = self.newClientPlacement(export)
            let stem = Self.spareStem(exportID: export.exportID, version: version, lowers: lowers)
            let anyOfExport = ".spare-\(String(export.exportID, radix: 16))-"
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: location.parent)) ?? []
            var found: [String] = []
            for entry in entries.sorted()
            where entry.hasPrefix(location.prefix + anyOfExport) && entry.hasSuffix(location.suffix) {
                let path = location.parent + "/" + entry
                if export.spareUppers > 0, entry.hasPrefix(location.prefix + stem),
                    UnionNamespace.isCompleteSpare(path)
                {
                    found.append(path)
                    continue
                }
                do {
                    try LayerTools.deleteDiscarded(path)
                } catch {
                    self.logger.warning(
                        "cannot delete a spare upper of other lowers (or cut short); delete it by hand",
                        metadata: ["spare": "\(path)", "error": "\(error)"])
                }
            }
            self.spareUppers.withLock { $0.pool[SpareKey(exportID: export.exportID, version: version)] = found }
        }
        self.topUpSpareUppers()
    }

    /// Fills each per-client export's pool to its `spare_uppers` (one at a time; a second caller meanwhile returns).
    /// Pools of versions new clients are no longer placed on are forgotten (their spares are deleted at the next
    /// start).
    func topUpSpareUppers() {
        let mine = self.spareUppers.withLock { pools -> Bool in
            if pools.toppingUp || pools.closed { return false }
            pools.toppingUp = true
            return true
        }
        guard mine else { return }
        defer { self.spareUppers.withLock { $0.toppingUp = false } }
        let stateDirectory = self.configuration.server.stateDirectory
        for export in self.exports where export.spareUppers > 0 {
            guard let location = Self.spareLocation(upper: export.upper) else { continue }
            let (version, lowers) = self.newClientPlacement(export)
            let key = SpareKey(exportID: export.exportID, version: version)
            self.spareUppers.withLock { pools in
                for other in pools.pool.keys where other.exportID == export.exportID && other != key {
                    pools.pool[other] = nil
                }
            }
            let stem = Self.spareStem(exportID: export.exportID, version: version, lowers: lowers)
            let shared = self.sharedIdentities(
                export: export, version: version, lowers: lowers,
                directory: ExportRegistry.identityDirectory(
                    stateDirectory: stateDirectory, exportID: export.exportID, version: version))
            do {
                try FileManager.default.createDirectory(
                    atPath: location.parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            } catch {
                self.logger.warning(
                    "cannot make spare uppers: their directory cannot be made; clients' first MNTs make their uppers",
                    metadata: ["export": "\(export.path)", "directory": "\(location.parent)", "error": "\(error)"])
                continue
            }
            // A shutdown meanwhile stops it (the shared stores it would use are closed).
            while self.spareUppers.withLock({ !$0.closed && ($0.pool[key]?.count ?? 0) < export.spareUppers }) {
                let name =
                    location.prefix + stem + String(UInt64.random(in: 0...UInt64.max), radix: 16) + location.suffix
                let path = location.parent + "/" + name
                do {
                    try UnionNamespace.makeSpareUpper(
                        path, lowers: lowers, shared: shared, logger: self.logger.with(["export": "\(export.path)"]))
                } catch {
                    self.logger.warning(
                        "cannot make a spare upper; clients' first MNTs make their uppers",
                        metadata: ["export": "\(export.path)", "spare": "\(path)", "error": "\(error)"])
                    break
                }
                self.spareUppers.withLock { $0.pool[key, default: []].append(path) }
            }
        }
    }

    /// The sweeper's part: top the pools up once no client's upper was made for a sweep interval (never while a room
    /// of clients is making theirs).
    func topUpSpareUppersIfQuiet() {
        let now = self.clock()
        let last = self.spareUppers.withLock { $0.lastTaken }
        guard now - last >= self.policy.sweepSeconds else { return }
        self.topUpSpareUppers()
    }

    /// Notes that a client's upper was made now (from a spare or not): the sweeper waits before making more.
    func noteUpperMade() {
        let now = self.clock()
        self.spareUppers.withLock { $0.lastTaken = now }
    }
}

/// The spare uppers ready per export and version (`SpareUppers.swift`).
struct SparePools: Sendable {
    var pool: [ExportRegistry.SpareKey: [String]] = [:]
    var toppingUp = false
    /// The registry is shutting down (`closeAll`): no more spares are made.
    var closed = false
    /// Monotonic seconds of the last client upper made.
    var lastTaken = -Double.infinity
}
