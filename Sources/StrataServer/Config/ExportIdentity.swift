import Basics
import TOMLKit

/// The keys of an `[[export]]` table that concern its identity and its bound on clients:
/// `id` (exports(5) `fsid=`) and `max_clients`.
extension ExportConfiguration {
    /// The largest export identifier: file handles carry 24 bits of it.
    public static let maxID: UInt32 = 0xff_ffff

    /// The identifier derived from the path, which every export had before `id` existed; an
    /// export without `id` keeps it (see `ExportIDTable`), so handles from before stay valid.
    public var pathHashID: UInt32 {
        UInt32(truncatingIfNeeded: FNV1a64.hash(self.path.utf8) & UInt64(ExportConfiguration.maxID))
    }

    /// The identifier carried in file handles: `id` when the file gives one, else the one
    /// assigned once and kept in `state_dir/export-ids`, else the path's hash.
    public var exportID: UInt32 { self.id ?? self.assignedID ?? self.pathHashID }

    /// Client uppers this export may have: its `max_clients`, else `[server] max_clients`.
    func clientLimit(server: ServerSettings) -> Int { self.maxClients ?? server.maxClients }
}

extension Configuration {
    static let idAllowed =
        "a number from 1 to 16777215: the export's identifier in file handles (exports(5) fsid=); once clients have mounted, keep it, or their handles go stale"

    /// `id` of an export table, if present.
    static func parseExportID(_ table: TOMLTable, prefix: String) throws(ConfigError) -> UInt32? {
        try configInt(table, "id", key: "\(prefix).id", allowed: Configuration.idAllowed) {
            $0 >= 1 && $0 <= Int(ExportConfiguration.maxID)
        }.map { UInt32($0) }
    }

    /// `spare_uppers` of an export table, if present: only for a per-client upper whose `{client}` is in its last
    /// component (a spare is renamed into the client's place, within one directory).
    static func parseSpareUppers(_ table: TOMLTable, key: String, upper: String?) throws(ConfigError) -> Int? {
        let allowed =
            "a number of uppers from 0 to 4096 made ahead for clients not seen yet (default 0), for an upper whose last path component holds {client}"
        guard
            let count = try configInt(
                table, "spare_uppers", key: key, allowed: allowed, where: { $0 >= 0 && $0 <= 4096 })
        else { return nil }
        if count > 0, ExportRegistry.spareLocation(upper: upper) == nil {
            throw ConfigError(key: key, value: "\(count)", allowed: allowed)
        }
        return count
    }

    /// `max_clients` of an export table or of `[server]`, if present.
    static func parseMaxClients(_ table: TOMLTable, key: String) throws(ConfigError) -> Int? {
        try configInt(
            table, "max_clients", key: key,
            allowed:
                "a number of client upper layers from 1 to 1000000 (default \(ServerSettings.defaultMaxClients)); a new client beyond it is refused at mount"
        ) { $0 >= 1 && $0 <= 1_000_000 }
    }

    /// Export identifiers must differ: explicit ones among themselves and from the path-derived
    /// identifier of exports without `id`.
    func validateExportIDs() throws(ConfigError) {
        var byID: [UInt32: String] = [:]
        for (index, export) in self.exports.enumerated() {
            if let other = byID[export.exportID] {
                if other == export.path {
                    throw ConfigError(
                        key: "export[\(index)].path", value: "\"\(export.path)\"",
                        allowed: "each export path may appear once")
                }
                if let id = export.id {
                    throw ConfigError(
                        key: "export[\(index)].id", value: "\(id)",
                        allowed: "export \"\(other)\" has the same identifier; give each export its own id")
                }
                throw ConfigError(
                    key: "export[\(index)].id", value: "(none)",
                    allowed:
                        "the identifier derived from \"\(export.path)\" (\(export.exportID)) is that of export \"\(other)\"; give this export an id of its own"
                )
            }
            byID[export.exportID] = export.path
        }
    }
}
