import Foundation
import Logging

/// The export identifiers a server has handed out, kept in `state_dir/export-ids` (one
/// `ID PATH` a line), so an export keeps its identifier, and its clients their file handles,
/// whatever else changes in the file.
///
/// An export with `id` in the configuration has that identifier. One without it keeps the
/// identifier recorded for its path; a path seen for the first time gets the hash of its path,
/// as every export had before identifiers were recorded (so handles from then stay valid), or,
/// if another export holds that one, the next free identifier.
struct ExportIDTable: Equatable {
    var idsByPath: [String: UInt32] = [:]

    static func path(_ stateDirectory: String) -> String { "\(stateDirectory)/export-ids" }

    static func load(stateDirectory: String, logger: Logger? = nil) -> ExportIDTable {
        var table = ExportIDTable()
        guard let text = StateFile.read(path(stateDirectory), logger: logger) else { return table }
        for line in text.split(separator: "\n") {
            // The path may contain spaces: it is the rest of the line.
            let fields = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard fields.count == 2, let id = UInt32(fields[0]), id >= 1, id <= ExportConfiguration.maxID else {
                continue
            }
            table.idsByPath[fields[1]] = id
        }
        return table
    }

    func save(stateDirectory: String) throws {
        let text = self.idsByPath.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)\n" }.joined()
        try StateFile.write(text, to: ExportIDTable.path(stateDirectory))
    }

    /// Gives every export of `configuration` its identifier (see the type's comment) and records
    /// them all. Returns the exports whose `id` differs from the one recorded for their path.
    @discardableResult
    mutating func assign(_ configuration: inout Configuration) -> [(index: Int, recorded: UInt32)] {
        var changed: [(index: Int, recorded: UInt32)] = []
        var used = Set(configuration.exports.compactMap(\.id))
        for index in configuration.exports.indices {
            let export = configuration.exports[index]
            if let id = export.id {
                if let recorded = self.idsByPath[export.path], recorded != id { changed.append((index, recorded)) }
                continue
            }
            let taken = used.union(self.idsByPath.filter { $0.key != export.path }.values)
            var id: UInt32
            if let recorded = self.idsByPath[export.path], !used.contains(recorded) {
                id = recorded
            } else {
                id = export.pathHashID == 0 ? 1 : export.pathHashID
                // At most 2^24 probes; in practice one, as exports are few.
                var probes: UInt32 = 0
                while taken.contains(id), probes < ExportConfiguration.maxID {
                    id = id >= ExportConfiguration.maxID ? 1 : id + 1
                    probes += 1
                }
            }
            configuration.exports[index].assignedID = id
            used.insert(id)
        }
        for export in configuration.exports {
            // One path per identifier: an identifier now used by another path (an export
            // renamed with its `id`) no longer belongs to the old path.
            self.idsByPath = self.idsByPath.filter { $0.value != export.exportID || $0.key == export.path }
            self.idsByPath[export.path] = export.exportID
        }
        return changed
    }
}
