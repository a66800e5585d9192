import Foundation
import SunRPC
import TOMLKit

/// How a per-client upper layer's client key is derived (`client_key` of an export).
public enum ClientKeySource: String, Sendable {
    /// The client's IP address (default).
    case address
    /// The AUTH_SYS machine name the client sends, for sites that trust it (e.g. behind NAT).
    case hostname
}

/// One `[[export]]` table.
public struct ExportConfiguration: Sendable {
    /// What clients mount, e.g. `/diskless/debian`.
    public var path: String
    /// Read-only layer directories, top-most first.
    public var lowers: [String]
    /// The writable layer directory, possibly a template containing `{client}`; nil for a
    /// read-only export.
    public var upper: String?
    public var clients: [ClientRule]
    public var clientKey: ClientKeySource

    /// True if every client gets its own upper layer.
    public var hasPerClientUpper: Bool { self.upper?.contains(ExportConfiguration.clientPlaceholder) ?? false }

    public static let clientPlaceholder = "{client}"

    /// `id`: the export's identifier in file handles, when the file gives one (see `exportID`).
    public var id: UInt32? = nil
    /// The identifier assigned to an export without `id`, kept in `state_dir/export-ids`.
    var assignedID: UInt32? = nil
    /// `max_clients`: client upper layers this export may have (see `clientLimit`).
    public var maxClients: Int? = nil
}

/// The `[server]` table.
public struct ServerSettings: Sendable {
    public var listen: [String] = ["0.0.0.0"]
    public var nfsPort: Int = 2049
    public var mountPort: Int = 20048
    public var portmapper: PortmapperMode = .auto
    /// Where per-client layers without an absolute template, identity stores of read-only
    /// exports and the mount table live.
    public var stateDirectory: String = "/var/lib/strata"
    /// `host:port` of the Prometheus text endpoint, nil when off (the default).
    public var metrics: String?
    public var maxRecordBytes: Int = 4 << 20
    public var threads: Int = 16
    public var logLevel: String = "info"
    public var controlSocket: String?
    /// `max_clients`: client upper layers a per-client export may have, unless it sets its own.
    public var maxClients: Int = ServerSettings.defaultMaxClients
    public static let defaultMaxClients = 1024

    public init() {}
}

/// A whole Strata configuration file.
public struct Configuration: Sendable {
    public var server = ServerSettings()
    public var exports: [ExportConfiguration] = []
    /// `[clients]`: address or machine name → stable client key.
    public var clientKeys: [String: String] = [:]

    public init() {}

    /// Reads and validates the file at `path`.
    public static func load(path: String) throws -> Configuration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(key: "--config", value: path, allowed: "a readable TOML file (\(error.localizedDescription))")
        }
        do {
            let directory = (path as NSString).deletingLastPathComponent
            return try Configuration(toml: text, relativeTo: directory.isEmpty ? "." : directory)
        } catch var error as ConfigError {
            error.file = path
            throw error
        }
    }

    /// Parses and validates TOML text. Relative layer and state paths are taken relative to
    /// `baseDirectory` (the configuration file's directory), so an example configuration works
    /// from a checkout wherever it lies.
    public init(toml text: String, relativeTo baseDirectory: String = FileManager.default.currentDirectoryPath) throws {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(
                key: "(syntax)", value: "line \(error.source.begin.line), column \(error.source.begin.column)",
                allowed: "valid TOML: \(error.description)")
        }
        for key in table.keys where !["server", "export", "clients"].contains(key) {
            throw ConfigError(key: key, value: "(table)", allowed: "top-level tables are [server], [[export]] and [clients]")
        }
        if let server = table["server"] {
            guard let serverTable = server.table else {
                throw ConfigError(key: "server", value: "\(server)", allowed: "a table: [server]")
            }
            self.server = try Configuration.parseServer(serverTable)
        }
        if let clients = table["clients"] {
            guard let clientTable = clients.table else {
                throw ConfigError(key: "clients", value: "\(clients)", allowed: "a table mapping addresses or machine names to client keys")
            }
            for key in clientTable.keys {
                guard let value = clientTable[key]?.string, !value.isEmpty else {
                    throw ConfigError(key: "clients.\"\(key)\"", value: "\(clientTable[key].map { "\($0)" } ?? "")", allowed: "a non-empty string: the client's stable key")
                }
                self.clientKeys[key] = value
            }
        }
        if let exports = table["export"] {
            guard let array = exports.array else {
                throw ConfigError(key: "export", value: "(not an array of tables)", allowed: "[[export]] tables")
            }
            for (index, element) in array.enumerated() {
                guard let exportTable = element.table else {
                    throw ConfigError(key: "export[\(index)]", value: "\(element)", allowed: "an [[export]] table")
                }
                self.exports.append(try Configuration.parseExport(exportTable, index: index))
            }
        }
        try self.validate()
        self.resolvePaths(against: baseDirectory)
    }

    mutating func resolvePaths(against base: String) {
        let absoluteBase = base.hasPrefix("/") ? base : FileManager.default.currentDirectoryPath + "/" + base
        func resolve(_ path: String) -> String {
            let joined = path.hasPrefix("/") ? path : absoluteBase + "/" + path
            return (joined as NSString).standardizingPath
        }
        self.server.stateDirectory = resolve(self.server.stateDirectory)
        for index in self.exports.indices {
            self.exports[index].lowers = self.exports[index].lowers.map(resolve)
            self.exports[index].upper = self.exports[index].upper.map(resolve)
        }
    }

    static func parseServer(_ table: TOMLTable) throws(ConfigError) -> ServerSettings {
        var settings = ServerSettings()
        let known = ["listen", "nfs_port", "mount_port", "portmapper", "state_dir", "metrics", "max_record_bytes", "threads", "log_level", "control_socket", "max_clients"]
        for key in table.keys where !known.contains(key) {
            throw ConfigError(key: "server.\(key)", value: "\(table[key].map { "\($0)" } ?? "")", allowed: "known keys are \(known.joined(separator: ", "))")
        }
        if let listen = table["listen"] {
            if let single = listen.string {
                settings.listen = [single]
            } else if let array = listen.array {
                settings.listen = try array.map { (value: TOMLValueConvertible) throws(ConfigError) -> String in
                    guard let text = value.string else {
                        throw ConfigError(key: "server.listen", value: "\(value)", allowed: "addresses as strings, e.g. [\"0.0.0.0\", \"::\"]")
                    }
                    return text
                }
            } else {
                throw ConfigError(key: "server.listen", value: "\(listen)", allowed: "an address or a list of addresses")
            }
            for address in settings.listen where IPAddress(address) == nil {
                throw ConfigError(key: "server.listen", value: "\"\(address)\"", allowed: "IPv4 or IPv6 addresses such as \"0.0.0.0\", \"127.0.0.1\" or \"::\"")
            }
            if settings.listen.isEmpty {
                throw ConfigError(key: "server.listen", value: "[]", allowed: "at least one address")
            }
        }
        settings.nfsPort = try port(table, "nfs_port", default: settings.nfsPort)
        settings.mountPort = try port(table, "mount_port", default: settings.mountPort)
        if let mode = table["portmapper"] {
            guard let text = mode.string, let parsed = PortmapperMode(rawValue: text) else {
                throw ConfigError(key: "server.portmapper", value: "\(mode)", allowed: "one of \"auto\", \"system\", \"builtin\", \"off\"")
            }
            settings.portmapper = parsed
        }
        if let stateDir = table["state_dir"] {
            guard let text = stateDir.string, !text.isEmpty else {
                throw ConfigError(key: "server.state_dir", value: "\(stateDir)", allowed: "a directory path (relative paths start at the configuration file's directory)")
            }
            settings.stateDirectory = text
        }
        if let metrics = table["metrics"] {
            guard let text = metrics.string, let colon = text.lastIndex(of: ":"), Int(text[text.index(after: colon)...]) != nil else {
                throw ConfigError(key: "server.metrics", value: "\(metrics)", allowed: "\"HOST:PORT\", e.g. \"127.0.0.1:9102\" (omit the key to turn metrics off)")
            }
            settings.metrics = text
        }
        if let socket = table["control_socket"] {
            guard let text = socket.string, text.hasPrefix("/") else {
                throw ConfigError(key: "server.control_socket", value: "\(socket)", allowed: "an absolute path for the control socket")
            }
            settings.controlSocket = text
        }
        if let bytes = table["max_record_bytes"] {
            guard let value = bytes.int, value >= 64 << 10, value <= 64 << 20 else {
                throw ConfigError(key: "server.max_record_bytes", value: "\(bytes)", allowed: "a number of bytes from 65536 to 67108864 (default 4194304)")
            }
            settings.maxRecordBytes = value
        }
        if let threads = table["threads"] {
            guard let value = threads.int, value >= 1, value <= 512 else {
                throw ConfigError(key: "server.threads", value: "\(threads)", allowed: "a number of worker threads from 1 to 512 (default 16)")
            }
            settings.threads = value
        }
        if let level = table["log_level"] {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard let text = level.string, levels.contains(text) else {
                throw ConfigError(key: "server.log_level", value: "\(level)", allowed: "one of \(levels.joined(separator: ", "))")
            }
            settings.logLevel = text
        }
        settings.maxClients = try parseMaxClients(table, key: "server.max_clients") ?? settings.maxClients
        return settings
    }

    static func port(_ table: TOMLTable, _ key: String, default value: Int) throws(ConfigError) -> Int {
        guard let raw = table[key] else { return value }
        guard let port = raw.int, port >= 0, port <= 65535 else {
            throw ConfigError(key: "server.\(key)", value: "\(raw)", allowed: "a port number from 0 to 65535 (0 picks a free port)")
        }
        return port
    }

    static func parseExport(_ table: TOMLTable, index: Int) throws(ConfigError) -> ExportConfiguration {
        let prefix = "export[\(index)]"
        let known = ["path", "lowers", "upper", "clients", "client_key", "id", "max_clients"]
        for key in table.keys where !known.contains(key) {
            throw ConfigError(key: "\(prefix).\(key)", value: "\(table[key].map { "\($0)" } ?? "")", allowed: "known keys are \(known.joined(separator: ", "))")
        }
        guard let path = table["path"]?.string, path.hasPrefix("/"), !path.contains("\0") else {
            throw ConfigError(key: "\(prefix).path", value: "\(table["path"].map { "\($0)" } ?? "(missing)")", allowed: "the absolute path clients mount, e.g. \"/diskless/debian\"")
        }
        let lowers = try stringList(table, "lowers", key: "\(prefix).lowers", what: "layer directories, top-most first")
        for lower in lowers where lower.isEmpty || lower.contains("\0") {
            throw ConfigError(key: "\(prefix).lowers", value: "\"\(lower)\"", allowed: "directory paths (relative ones start at the configuration file's directory)")
        }
        var upper: String?
        if let raw = table["upper"] {
            guard let text = raw.string, !text.isEmpty, !text.contains("\0") else {
                throw ConfigError(key: "\(prefix).upper", value: "\(raw)", allowed: "a directory path, optionally containing {client}; omit it for a read-only export")
            }
            let withoutPlaceholder = text.replacingOccurrences(of: ExportConfiguration.clientPlaceholder, with: "")
            if withoutPlaceholder.contains("{") || withoutPlaceholder.contains("}") {
                throw ConfigError(key: "\(prefix).upper", value: "\"\(text)\"", allowed: "the only placeholder is {client}")
            }
            upper = text
        }
        if lowers.isEmpty && upper == nil {
            throw ConfigError(key: "\(prefix).lowers", value: "[]", allowed: "at least one lower layer, or an upper layer")
        }
        let clientTexts = try stringList(table, "clients", key: "\(prefix).clients", what: "client rules such as \"10.0.0.0/24(rw,no_root_squash)\" or \"*(ro)\"")
        if clientTexts.isEmpty {
            throw ConfigError(key: "\(prefix).clients", value: "[]", allowed: "at least one client rule, e.g. [\"*(ro)\"] (an export nobody may mount is a mistake)")
        }
        var rules: [ClientRule] = []
        for text in clientTexts {
            rules.append(try ClientRule(parsing: text, key: "\(prefix).clients"))
        }
        var keySource = ClientKeySource.address
        if let raw = table["client_key"] {
            guard let text = raw.string, let parsed = ClientKeySource(rawValue: text) else {
                throw ConfigError(key: "\(prefix).client_key", value: "\(raw)", allowed: "\"address\" (the client's IP, default) or \"hostname\" (the AUTH_SYS machine name)")
            }
            keySource = parsed
        }
        return ExportConfiguration(
            path: path, lowers: lowers, upper: upper, clients: rules, clientKey: keySource,
            id: try parseExportID(table, prefix: prefix), maxClients: try parseMaxClients(table, key: "\(prefix).max_clients"))
    }

    static func stringList(_ table: TOMLTable, _ name: String, key: String, what: String) throws(ConfigError) -> [String] {
        guard let raw = table[name] else { return [] }
        if let single = raw.string { return [single] }
        guard let array = raw.array else {
            throw ConfigError(key: key, value: "\(raw)", allowed: "a list of strings: \(what)")
        }
        var result: [String] = []
        for element in array {
            guard let text = element.string else {
                throw ConfigError(key: key, value: "\(element)", allowed: "a list of strings: \(what)")
            }
            result.append(text)
        }
        return result
    }

    /// Checks what spans tables: unique export paths and export identifiers.
    func validate() throws(ConfigError) {
        try self.validateExportIDs()
        if self.server.nfsPort != 0 && self.server.nfsPort == self.server.mountPort {
            throw ConfigError(key: "server.mount_port", value: "\(self.server.mountPort)", allowed: "a port other than server.nfs_port")
        }
    }

    /// Checks what exists on disk: every lower is a directory. Used by `check-config` and at
    /// start-up; returns problems as errors naming the key.
    public func checkFileSystem() -> [ConfigError] {
        var problems: [ConfigError] = []
        for (index, export) in self.exports.enumerated() {
            for lower in export.lowers {
                var isDirectory: ObjCBool = false
                if !FileManager.default.fileExists(atPath: lower, isDirectory: &isDirectory) || !isDirectory.boolValue {
                    problems.append(ConfigError(key: "export[\(index)].lowers", value: "\"\(lower)\"", allowed: "an existing directory (create it or fix the path)"))
                }
            }
        }
        return problems
    }
}

/// FNV-1a, 64 bit: a stable hash (Swift's `Hasher` is seeded per process, so it cannot name
/// anything that must survive a restart).
public func stableHash64(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    return hash
}
