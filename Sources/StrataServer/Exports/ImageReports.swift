import Foundation
import Union

/// One export's image as `strata image list` shows it.
public struct ImageReport: Codable, Sendable, Equatable {
    public var export: String
    /// The version next mounts get (unless pinned).
    public var newest: Int
    public var versions: [VersionReport]
}

public struct VersionReport: Codable, Sendable, Equatable {
    public var number: Int
    public var lowers: [String]
    /// Bytes of the regular files of its layers when published.
    public var bytes: UInt64
    public var publishedAt: Double
    /// Client keys on this version.
    public var clients: [String]
    /// Client keys pinned to it (`[clients]` `pin = N`): they move to it at their next mount.
    public var pinned: [String]
}

/// Names a client's own changes hide in the version it moved to (`strata image conflicts`).
public struct ConflictReport: Codable, Sendable, Equatable {
    public var export: String
    public var client: String
    /// The version the client left (nil: it has not moved).
    public var from: Int?
    public var to: Int
    /// Layer-relative names its upper changed that `to` also changed with respect to `from`.
    public var names: [String]
}

/// What `strata image gc` did to one export.
public struct CollectionReport: Codable, Sendable, Equatable {
    public var export: String
    public var removed: [Int]
    /// Versions kept, each with why: "newest", or the clients on it or pinned to it.
    public var kept: [String]
}

/// What `strata image list`, `strata image conflicts` and the metrics show.
extension ExportRegistry {
    /// `strata exports`: a versioned export shows the lowers of the version next mounts get.
    public func exportReports() -> [ExportReport] {
        let (exports, table) = self.state.withReadLock { ($0.configuration.exports, $0.images) }
        return exports.map { export in
            var report = ExportReport(export)
            if ExportRegistry.isVersionable(export), let image = table[export.exportID],
                let newest = image.version(image.newest)
            {
                report.lowers = newest.lowers
                report.imageVersion = newest.number
            }
            return report
        }
    }

    /// `strata image list`.
    public func imageReports() -> [ImageReport] {
        let (exports, table, pins) = self.state.withReadLock {
            ($0.configuration.exports, $0.images, $0.configuration.clientPins)
        }
        return exports.compactMap { export -> ImageReport? in
            guard ExportRegistry.isVersionable(export), let image = table[export.exportID] else { return nil }
            let byVersion = self.clientsByVersion(export, image: image)
            return ImageReport(
                export: export.path, newest: image.newest,
                versions: image.versions.map { version in
                    VersionReport(
                        number: version.number, lowers: version.lowers,
                        bytes: version.layers.reduce(0) { $0 + $1.bytes },
                        publishedAt: version.publishedAt, clients: byVersion[version.number] ?? [],
                        pinned: pins.filter { $0.value == version.number }.map(\.key).sorted())
                })
        }
    }

    /// `strata image conflicts`: what client `rawKey`'s upper changed that its last move's
    /// version also changed.
    public func conflicts(exportPath: String, clientKey rawKey: String) throws -> ConflictReport {
        let export = try self.versionableExport(exportPath)
        let key = sanitizedClientKey(rawKey)
        guard let image = self.state.withReadLock({ $0.images[export.exportID] }) else {
            throw AdministrationError("export \(exportPath) has no image versions")
        }
        let placement = image.clients[key] ?? ClientPlacement(version: image.placement(of: key), previous: nil)
        var report = ConflictReport(
            export: exportPath, client: key, from: placement.previous, to: placement.version, names: [])
        guard let from = placement.previous else { return report }
        guard let old = image.version(from), let new = image.version(placement.version) else {
            throw AdministrationError(
                "version \(from) of \(exportPath), which client \(key) left, was removed (gc): nothing to compare with")
        }
        guard export.hasPerClientUpper, let upper = self.upperPath(export: export, clientKey: key),
            FileManager.default.fileExists(atPath: upper)
        else { return report }
        report.names = try LayerTools.conflicts(upper: upper, from: old.lowers, to: new.lowers)
        return report
    }

    /// Prometheus text: the newest version of each versioned export and the version each of
    /// its clients is on.
    public func imageMetrics() -> String {
        let reports = self.imageReports()
        guard !reports.isEmpty else { return "" }
        func quoted(_ text: String) -> String {
            "\""
                + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n") + "\""
        }
        var text = "# HELP strata_image_newest_version The image version the next mounts of the export get\n"
        text += "# TYPE strata_image_newest_version gauge\n"
        for report in reports {
            text += "strata_image_newest_version{export=\(quoted(report.export))} \(report.newest)\n"
        }
        text += "# HELP strata_client_image_version The image version a client of a versioned export is on\n"
        text += "# TYPE strata_client_image_version gauge\n"
        for report in reports {
            for version in report.versions {
                for client in version.clients {
                    text +=
                        "strata_client_image_version{export=\(quoted(report.export)),client=\(quoted(client))} \(version.number)\n"
                }
            }
        }
        return text
    }
}
