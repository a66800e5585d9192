import Foundation
import Logging
import Union

/// One published version of an export's image: an ordered list of read-only layers (top-most
/// first), fingerprinted when published and immutable from then on.
public struct ImageVersion: Codable, Sendable, Equatable {
    public var number: Int
    public var layers: [LayerFingerprint]
    /// Seconds since the epoch.
    public var publishedAt: Double

    public var lowers: [String] { self.layers.map(\.directory) }
}

/// Where one client of a versioned export stands: the version its namespace uses, and the one
/// it used before its last move (for `strata image conflicts`).
struct ClientPlacement: Codable, Sendable, Equatable {
    var version: Int
    var previous: Int?
}

/// The image of one export: its versions, the one next mounts get, and where each client is.
struct ExportImage: Codable, Sendable, Equatable {
    var versions: [ImageVersion]
    /// The version a client's next MNT moves it to (unless pinned): the last published, or the
    /// one a rollback chose.
    var newest: Int
    /// Never reused, so a handle of a removed version never names a new one.
    var nextNumber: Int
    /// The export's `lowers` in the configuration file when last compared: a file whose lowers
    /// differ from these publishes them (reload, restart).
    var configuredLowers: [String]
    /// Client key → placement. A client without one is on the first version (it mounted before
    /// the export had an image, when its lowers were that version's).
    var clients: [String: ClientPlacement] = [:]

    func version(_ number: Int) -> ImageVersion? { self.versions.first { $0.number == number } }

    /// The version `clientKey` is on.
    func placement(of clientKey: String) -> Int {
        self.clients[clientKey]?.version ?? self.versions.first?.number ?? 1
    }
}

/// The images of every versioned export, `state_dir/images.json`: written whole through
/// `StateFile` (temporary file, fsync, rename, fsync of the directory), so a crash during a
/// publish, rollback or gc leaves the old or the new set of versions, never a mix.
struct ImageTable: Codable, Sendable, Equatable {
    static let formatVersion = 1
    var format = ImageTable.formatVersion
    /// Export identifier (decimal) → its image. Keyed by identifier, as handles are: an export
    /// renamed with its `id` keeps its versions.
    var exports: [String: ExportImage] = [:]

    subscript(exportID: UInt32) -> ExportImage? {
        get { self.exports[String(exportID)] }
        set { self.exports[String(exportID)] = newValue }
    }

    static func path(_ stateDirectory: String) -> String { "\(stateDirectory)/images.json" }

    static func load(stateDirectory: String, logger: Logger?) -> ImageTable {
        guard let text = StateFile.read(path(stateDirectory), logger: logger) else { return ImageTable() }
        do {
            let table = try JSONDecoder().decode(ImageTable.self, from: Data(text.utf8))
            guard table.format <= ImageTable.formatVersion else {
                logger?.critical(
                    "the image versions were written by a newer Strata; serving every export as unversioned",
                    metadata: ["file": "\(path(stateDirectory))"])
                return ImageTable()
            }
            return table
        } catch {
            logger?.critical(
                "cannot parse the image versions; serving every export as unversioned until it is fixed or removed",
                metadata: ["file": "\(path(stateDirectory))", "error": "\(error)"])
            return ImageTable()
        }
    }

    func save(stateDirectory: String) throws(StateFile.WriteError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // Encoding plain structs of strings and numbers cannot fail.
        let data = (try? encoder.encode(self)) ?? Data()
        try StateFile.write(String(decoding: data, as: UTF8.self) + "\n", to: ImageTable.path(stateDirectory))
    }
}
