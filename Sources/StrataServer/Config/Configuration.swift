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
public struct ExportConfiguration: Sendable, Equatable {
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
    /// (A plain byte search: every call asks, and both Foundation's and the standard library's
    /// generic `contains` showed in profiles.)
    public var hasPerClientUpper: Bool {
        guard let upper = self.upper else { return false }
        let needle: StaticString = "{client}"
        return upper.utf8.withContiguousStorageIfAvailable { hay in
            needle.withUTF8Buffer { pattern in
                guard hay.count >= pattern.count else { return false }
                for start in 0...(hay.count - pattern.count) where hay[start] == pattern[0] {
                    var index = 1
                    while index < pattern.count && hay[start + index] == pattern[index] { index += 1 }
                    if index == pattern.count { return true }
                }
                return false
            }
        } ?? upper.contains(ExportConfiguration.clientPlaceholder)
    }

    public static let clientPlaceholder = "{client}"

    /// `id`: the export's identifier in file handles, when the file gives one (see `exportID`).
    public var id: UInt32? = nil
    /// The identifier assigned to an export without `id`, kept in `state_dir/export-ids`.
    var assignedID: UInt32? = nil
    /// `max_clients`: client upper layers this export may have (see `clientLimit`).
    public var maxClients: Int? = nil
    /// `spare_uppers`: uppers made ahead for clients not seen yet (see `SpareUppers.swift`); 0 without the key.
    public var spareUppers: Int = 0
}

/// How log lines are written (`[server] log_format`).
public enum LogFormat: String, Sendable, CaseIterable {
    /// One line of text a message: level, message, then `key=value` metadata.
    case text
    /// One JSON object a line, for log shippers.
    case json
}

/// The `[server]` table.
public struct ServerSettings: Sendable, Equatable {
    public var listen: [String] = ["0.0.0.0"]
    public var nfsPort: Int = 2049
    public var mountPort: Int = 20048
    public var portmapper: PortmapperMode = .auto
    /// Where the server keeps its own files: the lock naming the running server, the mount
    /// table, reset generations, identity stores of read-only exports, the control socket.
    public var stateDirectory: String = "/var/lib/strata"
    /// `host:port` of the Prometheus text endpoint, nil when off (the default).
    public var metrics: String?
    public var maxRecordBytes: Int = 4 << 20
    /// Pool workers. A namespace change's reply waits for its group commit's flush, not its worker (held replies), but
    /// workers still sleep on the disk for stable WRITEs, copy-ups, cold reads and the flushes they lead; with 16, when
    /// changes slept on their flushes, a client's 32 concurrent CREATEs made batches of 8.
    public var threads: Int = 64
    public var logLevel: String = "info"
    public var logFormat: LogFormat = .text
    public var controlSocket: String?
    /// `max_clients`: client upper layers a per-client export may have, unless it sets its own.
    public var maxClients: Int = ServerSettings.defaultMaxClients
    public static let defaultMaxClients = 1024

    public init() {}

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
}

/// `strata serve` options that override `[server]` keys. They go through the same checks as
/// the file, and their errors name the option (`--nfs-port 70000: ...`).
public struct ConfigurationOverrides: Sendable, Equatable {
    public var listen: [String] = []
    public var nfsPort: Int?
    public var mountPort: Int?
    public var portmapper: String?
    /// Relative to the current directory.
    public var stateDirectory: String?

    public init(
        listen: [String] = [], nfsPort: Int? = nil, mountPort: Int? = nil, portmapper: String? = nil,
        stateDirectory: String? = nil
    ) {
        self.listen = listen
        self.nfsPort = nfsPort
        self.mountPort = mountPort
        self.portmapper = portmapper
        self.stateDirectory = stateDirectory
    }
}

/// A whole Strata configuration file.
public struct Configuration: Sendable {
    public var server = ServerSettings()
    public var exports: [ExportConfiguration] = []
    /// `[clients]`: address or machine name → stable client key.
    public var clientKeys: [String: String] = [:]
    /// `[clients]` entries with `pin = N`: client key → the image version its next mount gets.
    public var clientPins: [String: Int] = [:]
    /// Options accepted without effect (`async`, `wdelay`, `subtree_check`): worth a warning.
    public var warnings: [ConfigError] = []
    /// The file it was read from and where its keys are, so later checks name lines too.
    var source: (file: String?, locator: SourceLocator)?

    public init() {}

    /// Reads and validates the file at `path`, with `overrides` from the command line; with
    /// `checkingFileSystem`, what `checkFileSystem()` finds counts among the errors too.
    /// - Throws: `ConfigurationErrors` listing every problem, each with `FILE:LINE`.
    public static func load(
        path: String, overrides: ConfigurationOverrides = ConfigurationOverrides(), checkingFileSystem: Bool = false
    ) throws -> Configuration {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else {
            let reason = access(path, R_OK) != 0 ? String(cString: strerror(errno)) : "not a regular file of UTF-8 text"
            throw ConfigurationErrors(errors: [
                ConfigError(
                    key: "--config", value: path, allowed: "a readable TOML file (\(reason)); pass --config FILE")
            ])
        }
        let directory = (path as NSString).deletingLastPathComponent
        return try Configuration(
            toml: text, relativeTo: directory.isEmpty ? "." : directory, overrides: overrides, file: path,
            checkingFileSystem: checkingFileSystem)
    }

    /// Parses and validates TOML text. Relative layer and state paths are taken relative to
    /// `baseDirectory` (the configuration file's directory), so an example configuration works
    /// from a checkout wherever it lies. `file` names the text in messages.
    /// - Throws: `ConfigurationErrors` listing every problem in file order.
    public init(
        toml text: String, relativeTo baseDirectory: String = FileManager.default.currentDirectoryPath,
        overrides: ConfigurationOverrides = ConfigurationOverrides(), file: String? = nil,
        checkingFileSystem: Bool = false
    ) throws {
        var problems = ProblemList()
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationErrors(errors: [
                ConfigError(
                    key: ConfigError.syntaxKey, value: "",
                    allowed: "invalid TOML at column \(error.source.begin.column): \(error.description)", file: file,
                    line: error.source.begin.line)
            ])
        }
        for key in table.keys where !["server", "export", "clients"].contains(key) {
            problems.error(
                ConfigError(
                    key: key, value: "(table)", allowed: "top-level tables are [server], [[export]] and [clients]"))
        }
        if let server = table["server"] {
            if let serverTable = server.table {
                Configuration.parseServer(serverTable, into: &self.server, problems: &problems)
            } else {
                problems.error(ConfigError(key: "server", value: shown(server), allowed: "a table: [server]"))
            }
        }
        if let clients = table["clients"] {
            if let clientTable = clients.table {
                for key in clientTable.keys {
                    // "10.0.0.7" = "pc07", or a table: "10.0.0.7" = { key = "pc07", pin = 3 }
                    // (`key` defaults to the name itself).
                    if let entry = clientTable[key]?.table {
                        let unknown = entry.keys.filter { !["key", "pin"].contains($0) }
                        let value = entry["key"] == nil ? key : entry["key"]?.string ?? ""
                        let pin = entry["pin"]?.int
                        if !unknown.isEmpty || value.isEmpty || (entry["pin"] != nil && (pin ?? 0) < 1) {
                            problems.error(
                                ConfigError(
                                    key: "clients.\"\(key)\"", value: shown(clientTable[key]),
                                    allowed:
                                        "{ key = \"client key\", pin = N }: a non-empty key and an image version number >= 1"
                                ))
                            continue
                        }
                        self.clientKeys[key] = value
                        if let pin { self.clientPins[sanitizedClientKey(value)] = pin }
                        continue
                    }
                    guard let value = clientTable[key]?.string, !value.isEmpty else {
                        problems.error(
                            ConfigError(
                                key: "clients.\"\(key)\"", value: shown(clientTable[key]),
                                allowed: "a non-empty string: the client's stable key, or { key = \"...\", pin = N }"))
                        continue
                    }
                    self.clientKeys[key] = value
                }
            } else {
                problems.error(
                    ConfigError(
                        key: "clients", value: shown(clients),
                        allowed: "a table mapping addresses or machine names to client keys"))
            }
        }
        if let exports = table["export"] {
            if let array = exports.array {
                for (index, element) in array.enumerated() {
                    guard let exportTable = element.table else {
                        problems.error(
                            ConfigError(key: "export[\(index)]", value: shown(element), allowed: "an [[export]] table"))
                        continue
                    }
                    if let export = Configuration.parseExport(exportTable, index: index, problems: &problems) {
                        self.exports.append(export)
                    }
                }
            } else {
                problems.error(
                    ConfigError(key: "export", value: "(not an array of tables)", allowed: "[[export]] tables"))
            }
        }
        self.resolvePaths(against: baseDirectory)
        self.apply(overrides, problems: &problems)
        self.validate(problems: &problems, overrides: overrides)
        if checkingFileSystem {
            problems.errors += self.fileSystemProblems()
        }

        self.source = (file, SourceLocator(text: text))
        let errors = self.located(problems.errors)
        let warnings = self.located(problems.warnings)
        if !errors.isEmpty { throw ConfigurationErrors(errors: errors, warnings: warnings) }
        self.warnings = warnings
    }

    /// `problems` with the file and line they are about, in file order; command-line problems
    /// (no line) last, in the order found.
    func located(_ problems: [ConfigError]) -> [ConfigError] {
        let withLines = problems.map { problem -> ConfigError in
            var problem = problem
            guard let source = self.source else { return problem }
            problem.file = source.file
            problem.line = problem.line ?? source.locator.line(of: problem)
            return problem
        }
        return withLines.enumerated().sorted {
            ($0.element.line ?? .max, $0.offset) < ($1.element.line ?? .max, $1.offset)
        }.map(\.element)
    }

    mutating func resolvePaths(against base: String) {
        self.server.stateDirectory = resolvedPath(self.server.stateDirectory, against: base)
        for index in self.exports.indices {
            self.exports[index].lowers = self.exports[index].lowers.map { resolvedPath($0, against: base) }
            self.exports[index].upper = self.exports[index].upper.map { resolvedPath($0, against: base) }
        }
    }

    static let serverKeys = [
        "listen", "nfs_port", "mount_port", "portmapper", "state_dir", "metrics", "max_record_bytes", "threads",
        "log_level", "log_format",
        "control_socket", "max_clients",
    ]

    static func parseServer(_ table: TOMLTable, into settings: inout ServerSettings, problems: inout ProblemList) {
        for key in table.keys where !serverKeys.contains(key) {
            problems.error(
                ConfigError(
                    key: "server.\(key)", value: shown(table[key]),
                    allowed: "known keys are \(serverKeys.joined(separator: ", "))"))
        }
        problems.check { () throws(ConfigError) in
            guard let listen = table["listen"] else { return }
            var addresses: [String] = []
            if let single = listen.string {
                addresses = [single]
            } else if let array = listen.array {
                for value in array {
                    guard let text = value.string else {
                        throw ConfigError(
                            key: "server.listen", value: shown(value),
                            allowed: "addresses as strings, e.g. [\"0.0.0.0\", \"::\"]")
                    }
                    addresses.append(text)
                }
            } else {
                throw ConfigError(
                    key: "server.listen", value: shown(listen), allowed: "an address or a list of addresses")
            }
            settings.listen = try checkedListen(addresses, key: "server.listen")
        }
        problems.check { () throws(ConfigError) in
            settings.nfsPort = try port(table, "nfs_port", default: settings.nfsPort)
        }
        problems.check { () throws(ConfigError) in
            settings.mountPort = try port(table, "mount_port", default: settings.mountPort)
        }
        problems.check { () throws(ConfigError) in
            guard let mode = table["portmapper"] else { return }
            settings.portmapper = try checkedPortmapper(mode.string, shown: shown(mode), key: "server.portmapper")
        }
        problems.check { () throws(ConfigError) in
            settings.stateDirectory =
                try configString(
                    table, "state_dir", key: "server.state_dir",
                    allowed: "a directory path (relative paths start at the configuration file's directory)"
                ) { !$0.isEmpty && !$0.contains("\0") } ?? settings.stateDirectory
        }
        problems.check { () throws(ConfigError) in
            settings.metrics =
                try configString(
                    table, "metrics", key: "server.metrics",
                    allowed:
                        "\"HOST:PORT\" with a port from 0 to 65535, e.g. \"127.0.0.1:9102\" (omit the key to turn metrics off)"
                ) { MetricsAddress($0) != nil } ?? settings.metrics
        }
        problems.check { () throws(ConfigError) in
            settings.controlSocket =
                try configString(
                    table, "control_socket", key: "server.control_socket",
                    allowed: "an absolute path for the control socket"
                ) { $0.hasPrefix("/") && !$0.contains("\0") } ?? settings.controlSocket
        }
        problems.check { () throws(ConfigError) in
            settings.maxRecordBytes =
                try configInt(
                    table, "max_record_bytes", key: "server.max_record_bytes",
                    allowed: "a number of bytes from 65536 to 67108864 (default 4194304)"
                ) { $0 >= 64 << 10 && $0 <= 64 << 20 } ?? settings.maxRecordBytes
        }
        problems.check { () throws(ConfigError) in
            settings.threads =
                try configInt(
                    table, "threads", key: "server.threads",
                    allowed: "a number of worker threads from 1 to 512 (default 64)"
                ) { $0 >= 1 && $0 <= 512 } ?? settings.threads
        }
        problems.check { () throws(ConfigError) in
            settings.logLevel =
                try configString(
                    table, "log_level", key: "server.log_level",
                    allowed: "one of \(ServerSettings.logLevels.joined(separator: ", "))"
                ) { ServerSettings.logLevels.contains($0) } ?? settings.logLevel
        }
        problems.check { () throws(ConfigError) in
            let format = try configString(
                table, "log_format", key: "server.log_format",
                allowed: "\"text\" (default) or \"json\" (one object a line)"
            ) { LogFormat(rawValue: $0) != nil }
            settings.logFormat = format.flatMap(LogFormat.init(rawValue:)) ?? settings.logFormat
        }
        problems.check { () throws(ConfigError) in
            settings.maxClients = try parseMaxClients(table, key: "server.max_clients") ?? settings.maxClients
        }
    }

    static func checkedListen(_ addresses: [String], key: String) throws(ConfigError) -> [String] {
        let isOption = key.hasPrefix("--")
        for address in addresses where IPAddress(address) == nil {
            throw ConfigError(
                key: key, value: isOption ? address : "\"\(address)\"",
                allowed: isOption
                    ? "an IPv4 or IPv6 address such as 0.0.0.0, 127.0.0.1 or :: (host names are not taken; repeat --listen for several)"
                    : "IPv4 or IPv6 addresses such as \"0.0.0.0\", \"127.0.0.1\" or \"::\" (host names are not taken)")
        }
        if addresses.isEmpty {
            throw ConfigError(key: key, value: "[]", allowed: "at least one address")
        }
        return addresses
    }

    static func checkedPortmapper(_ text: String?, shown: String, key: String) throws(ConfigError) -> PortmapperMode {
        guard let text, let parsed = PortmapperMode(rawValue: text) else {
            throw ConfigError(key: key, value: shown, allowed: "one of \"auto\", \"system\", \"builtin\", \"off\"")
        }
        return parsed
    }

    static func checkedPort(_ value: Int?, shown: String, key: String) throws(ConfigError) -> Int {
        guard let value, value >= 0, value <= 65535 else {
            throw ConfigError(key: key, value: shown, allowed: "a port number from 0 to 65535 (0 picks a free port)")
        }
        return value
    }

    static func port(_ table: TOMLTable, _ key: String, default value: Int) throws(ConfigError) -> Int {
        guard let raw = table[key] else { return value }
        return try checkedPort(raw.int, shown: shown(raw), key: "server.\(key)")
    }

    /// Command-line options replace keys of `[server]` after the same checks.
    mutating func apply(_ overrides: ConfigurationOverrides, problems: inout ProblemList) {
        if !overrides.listen.isEmpty {
            problems.check { () throws(ConfigError) in
                self.server.listen = try Configuration.checkedListen(overrides.listen, key: "--listen")
            }
        }
        if let nfsPort = overrides.nfsPort {
            problems.check { () throws(ConfigError) in
                self.server.nfsPort = try Configuration.checkedPort(nfsPort, shown: "\(nfsPort)", key: "--nfs-port")
            }
        }
        if let mountPort = overrides.mountPort {
            problems.check { () throws(ConfigError) in
                self.server.mountPort = try Configuration.checkedPort(
                    mountPort, shown: "\(mountPort)", key: "--mount-port")
            }
        }
        if let portmapper = overrides.portmapper {
            problems.check { () throws(ConfigError) in
                self.server.portmapper = try Configuration.checkedPortmapper(
                    portmapper, shown: portmapper, key: "--portmapper")
            }
        }
        if let stateDirectory = overrides.stateDirectory {
            if stateDirectory.isEmpty || stateDirectory.contains("\0") {
                problems.error(
                    ConfigError(key: "--state-dir", value: "\"\(stateDirectory)\"", allowed: "a directory path"))
            } else {
                self.server.stateDirectory = resolvedPath(
                    stateDirectory, against: FileManager.default.currentDirectoryPath)
            }
        }
    }

    static let exportKeys = ["path", "lowers", "upper", "clients", "client_key", "id", "max_clients", "spare_uppers"]

    /// One `[[export]]` table; nil if it is too broken to check further (problems say why).
    static func parseExport(_ table: TOMLTable, index: Int, problems: inout ProblemList) -> ExportConfiguration? {
        let prefix = "export[\(index)]"
        for key in table.keys where !exportKeys.contains(key) {
            problems.error(
                ConfigError(
                    key: "\(prefix).\(key)", value: shown(table[key]),
                    allowed: "known keys are \(exportKeys.joined(separator: ", "))"))
        }
        var path: String?
        problems.check { () throws(ConfigError) in
            guard let text = table["path"]?.string, text.hasPrefix("/"), !text.contains("\0") else {
                throw ConfigError(
                    key: "\(prefix).path", value: table["path"].map(shown) ?? "(missing)",
                    allowed: "the absolute path clients mount, e.g. \"/diskless/debian\"")
            }
            path = text
        }
        var lowers: [String] = []
        problems.check { () throws(ConfigError) in
            lowers = try stringList(table, "lowers", key: "\(prefix).lowers", what: "layer directories, top-most first")
        }
        for (position, lower) in lowers.enumerated() {
            if lower.isEmpty || lower.contains("\0") {
                problems.error(
                    ConfigError(
                        key: "\(prefix).lowers", value: "\"\(lower)\"",
                        allowed: "directory paths (relative ones start at the configuration file's directory)",
                        entry: position))
            } else if lower.contains(ExportConfiguration.clientPlaceholder) {
                problems.error(
                    ConfigError(
                        key: "\(prefix).lowers", value: "\"\(lower)\"",
                        allowed:
                            "{client} only works in upper: lowers are shared by every client; give each client its own layer with upper = \".../{client}\"",
                        entry: position))
            }
        }
        var upper: String?
        problems.check { () throws(ConfigError) in
            guard
                let text = try configString(
                    table, "upper", key: "\(prefix).upper",
                    allowed: "a directory path, optionally containing {client}; omit it for a read-only export",
                    where: { !$0.isEmpty && !$0.contains("\0") })
            else { return }
            let withoutPlaceholder = text.replacingOccurrences(of: ExportConfiguration.clientPlaceholder, with: "")
            if withoutPlaceholder.contains("{") || withoutPlaceholder.contains("}") {
                throw ConfigError(
                    key: "\(prefix).upper", value: "\"\(text)\"", allowed: "the only placeholder is {client}")
            }
            upper = text
        }
        if lowers.isEmpty && upper == nil && table["lowers"] != nil && table["upper"] == nil {
            problems.error(
                ConfigError(
                    key: "\(prefix).lowers", value: "[]", allowed: "at least one lower layer, or an upper layer"))
        } else if table["lowers"] == nil && table["upper"] == nil {
            problems.error(
                ConfigError(
                    key: "\(prefix).lowers", value: "(missing)", allowed: "at least one lower layer, or an upper layer")
            )
        }
        var rules: [ClientRule] = []
        var clientTexts: [String] = []
        problems.check { () throws(ConfigError) in
            clientTexts = try stringList(
                table, "clients", key: "\(prefix).clients",
                what: "client rules such as \"10.0.0.0/24(rw,no_root_squash)\" or \"*(ro)\"")
            if clientTexts.isEmpty {
                throw ConfigError(
                    key: "\(prefix).clients", value: table["clients"] == nil ? "(missing)" : "[]",
                    allowed: "at least one client rule, e.g. [\"*(ro)\"] (an export nobody may mount is a mistake)")
            }
        }
        for (position, text) in clientTexts.enumerated() {
            do {
                let rule = try ClientRule(parsing: text, key: "\(prefix).clients", warnings: &problems.warnings)
                if let earlier = rules.first(where: { $0.match.coversSameClients(as: rule.match) }) {
                    problems.error(
                        ConfigError(
                            key: "\(prefix).clients", value: "\"\(text)\"",
                            allowed:
                                "the same clients as the earlier rule \"\(earlier.text)\"; only one of them would apply: merge their options into one rule",
                            entry: position))
                }
                rules.append(rule)
            } catch {
                var located = error
                located.entry = position
                problems.error(located)
            }
        }
        // Warnings of a rule name its line too.
        for index in problems.warnings.indices
        where problems.warnings[index].key == "\(prefix).clients" && problems.warnings[index].entry == nil {
            let value = problems.warnings[index].value
            problems.warnings[index].entry = clientTexts.firstIndex { "\"\($0)\"" == value }
        }
        var keySource = ClientKeySource.address
        problems.check { () throws(ConfigError) in
            let source = try configString(
                table, "client_key", key: "\(prefix).client_key",
                allowed: "\"address\" (the client's IP, default) or \"hostname\" (the AUTH_SYS machine name)"
            ) { ClientKeySource(rawValue: $0) != nil }
            keySource = source.flatMap(ClientKeySource.init(rawValue:)) ?? keySource
        }
        var id: UInt32?
        problems.check { () throws(ConfigError) in id = try parseExportID(table, prefix: prefix) }
        var maxClients: Int?
        problems.check { () throws(ConfigError) in maxClients = try parseMaxClients(table, key: "\(prefix).max_clients")
        }
        var spareUppers: Int?
        problems.check { () throws(ConfigError) in
            spareUppers = try parseSpareUppers(table, key: "\(prefix).spare_uppers", upper: upper)
        }
        // Kept when only its rules are broken (those are errors already), so its layers are
        // still checked.
        guard let path, !(lowers.isEmpty && upper == nil) else { return nil }
        return ExportConfiguration(
            path: path, lowers: lowers, upper: upper, clients: rules, clientKey: keySource, id: id,
            maxClients: maxClients, spareUppers: spareUppers ?? 0)
    }

    static func stringList(
        _ table: TOMLTable, _ name: String, key: String, what: String
    ) throws(ConfigError) -> [String] {
        guard let raw = table[name] else { return [] }
        if let single = raw.string { return [single] }
        guard let array = raw.array else {
            throw ConfigError(key: key, value: shown(raw), allowed: "a list of strings: \(what)")
        }
        var result: [String] = []
        for element in array {
            guard let text = element.string else {
                throw ConfigError(key: key, value: shown(element), allowed: "a list of strings: \(what)")
            }
            result.append(text)
        }
        return result
    }

    /// Checks what spans tables: unique export paths and identifiers, distinct ports, and
    /// layers that would corrupt each other (one writable layer for two exports, an upper
    /// inside a lower or inside the state directory).
    func validate(problems: inout ProblemList, overrides: ConfigurationOverrides = ConfigurationOverrides()) {
        problems.check { () throws(ConfigError) in try self.validateExportIDs() }
        self.validatePorts(problems: &problems, overrides: overrides)
        self.validateLayerPlacement(problems: &problems)
    }

    func validatePorts(problems: inout ProblemList, overrides: ConfigurationOverrides) {
        let settings = self.server
        // The option, if one set the value (an invalid one did not and has its own error).
        let nfsKey = overrides.nfsPort == settings.nfsPort ? "--nfs-port" : "server.nfs_port"
        let mountKey = overrides.mountPort == settings.mountPort ? "--mount-port" : "server.mount_port"
        if settings.nfsPort != 0 && settings.nfsPort == settings.mountPort {
            problems.error(
                ConfigError(
                    key: mountKey, value: "\(settings.mountPort)",
                    allowed:
                        "the same port as \(nfsKey); NFS and MOUNT each need a port of their own (usually 2049 and 20048)"
                ))
        }
        if let metrics = settings.metrics.flatMap(MetricsAddress.init), metrics.port != 0 {
            for (key, port) in [(nfsKey, settings.nfsPort), (mountKey, settings.mountPort)] where port == metrics.port {
                problems.error(
                    ConfigError(
                        key: "server.metrics", value: "\"\(settings.metrics ?? "")\"",
                        allowed: "the same port as \(key); give the metrics endpoint a port of its own, e.g. 9102"))
            }
        }
    }

    func validateLayerPlacement(problems: inout ProblemList) {
        let stateDirectory = self.server.stateDirectory
        for (index, export) in self.exports.enumerated() {
            let prefix = "export[\(index)]"
            guard let upper = export.upper else { continue }
            let upperRoot = upperDirectoryRoot(upper)
            // An upper that another export also writes.
            for (otherIndex, other) in self.exports.enumerated() where otherIndex < index {
                guard let otherUpper = other.upper, uppersOverlap(upper, otherUpper) else { continue }
                problems.error(
                    ConfigError(
                        key: "\(prefix).upper", value: "\"\(upper)\"",
                        allowed:
                            "overlaps the upper of export[\(otherIndex)] (\"\(otherUpper)\"); two exports writing one layer corrupt each other's whiteouts and metadata: give each export its own upper"
                    ))
            }
            // An upper inside a lower changes that lower under every union that reads it; a lower
            // inside an upper is changed by clients.
            for (otherIndex, other) in self.exports.enumerated() {
                for (position, lower) in other.lowers.enumerated() {
                    problems.refuseNesting(
                        upperRoot,
                        ConfigError(
                            key: "\(prefix).upper", value: "\"\(upper)\"",
                            allowed:
                                "inside export[\(otherIndex)].lowers \"\(lower)\"; a lower layer must not change under the union: put the upper outside every lower"
                        ),
                        lower,
                        ConfigError(
                            key: "export[\(otherIndex)].lowers", value: "\"\(lower)\"",
                            allowed:
                                "inside the upper of \(prefix) (\"\(upper)\"), where clients write; a lower layer must lie outside every upper",
                            entry: position))
                }
            }
            problems.refuseNesting(
                upperRoot,
                ConfigError(
                    key: "\(prefix).upper", value: "\"\(upper)\"",
                    allowed:
                        "inside server.state_dir \"\(stateDirectory)\", which holds the server's own files: put the upper elsewhere"
                ),
                stateDirectory,
                ConfigError(
                    key: "server.state_dir", value: "\"\(stateDirectory)\"",
                    allowed:
                        "inside the upper of \(prefix) (\"\(upper)\"), where clients could see and change it: put state_dir elsewhere"
                ))
        }
    }

    /// Checks what exists on disk: every lower is a directory, every upper and the state
    /// directory exist or can be created. Used by `check-config` and at start-up; returns
    /// problems as errors naming the key.
    public func checkFileSystem() -> [ConfigError] {
        self.located(self.fileSystemProblems())
    }

    func fileSystemProblems() -> [ConfigError] {
        var problems: [ConfigError] = []
        for (index, export) in self.exports.enumerated() {
            // A lower with {client} is an error of its own already.
            for (position, lower) in export.lowers.enumerated()
            where !lower.contains(ExportConfiguration.clientPlaceholder) {
                var isDirectory: ObjCBool = false
                if !FileManager.default.fileExists(atPath: lower, isDirectory: &isDirectory) {
                    problems.append(
                        ConfigError(
                            key: "export[\(index)].lowers", value: "\"\(lower)\"",
                            allowed: "no such directory (create it or fix the path)", entry: position))
                } else if !isDirectory.boolValue {
                    problems.append(
                        ConfigError(
                            key: "export[\(index)].lowers", value: "\"\(lower)\"",
                            allowed: "not a directory (fix the path)", entry: position))
                }
            }
            if let upper = export.upper, let reason = whyCannotCreate(upperDirectoryRoot(upper)) {
                problems.append(
                    ConfigError(
                        key: "export[\(index)].upper", value: "\"\(upper)\"", allowed: "cannot be created: \(reason)"))
            }
        }
        if let reason = whyCannotCreate(self.server.stateDirectory) {
            problems.append(
                ConfigError(
                    key: "server.state_dir", value: "\"\(self.server.stateDirectory)\"",
                    allowed: "cannot be created: \(reason)"))
        }
        return problems
    }
}

extension ConfigError {
    static let syntaxKey = "(syntax)"
}

/// The value `name` of `table` as `read` takes it, nil when the key is absent; anything `read` cannot take or
/// `isValid` refuses is an error naming `key`, the value as written and what is `allowed`.
func configValue<T>(
    _ table: TOMLTable, _ name: String, _ read: (any TOMLValueConvertible) -> T?, key: String,
    allowed: @autoclosure () -> String, where isValid: (T) -> Bool
) throws(ConfigError) -> T? {
    guard let raw = table[name] else { return nil }
    guard let value = read(raw), isValid(value) else {
        throw ConfigError(key: key, value: shown(raw), allowed: allowed())
    }
    return value
}

/// A string key (see `configValue`).
func configString(
    _ table: TOMLTable, _ name: String, key: String, allowed: @autoclosure () -> String,
    where isValid: (String) -> Bool
) throws(ConfigError) -> String? {
    try configValue(table, name, { $0.string }, key: key, allowed: allowed(), where: isValid)
}

/// An integer key (see `configValue`).
func configInt(
    _ table: TOMLTable, _ name: String, key: String, allowed: @autoclosure () -> String,
    where isValid: (Int) -> Bool
) throws(ConfigError) -> Int? {
    try configValue(table, name, { $0.int }, key: key, allowed: allowed(), where: isValid)
}

/// A TOML value as the file spells it: strings in quotes, other values as they are.
func shown(_ value: (any TOMLValueConvertible)?) -> String {
    guard let value else { return "(missing)" }
    if let text = value.string { return "\"\(text)\"" }
    return "\(value)"
}

/// `[server] metrics`: `HOST:PORT` or `[IPv6]:PORT`.
public struct MetricsAddress: Sendable, Equatable {
    public var host: String
    public var port: Int

    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), port >= 0,
            port <= 65535
        else {
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }
}

/// `path` made absolute against `base` and standardized (`.` and `..` removed).
func resolvedPath(_ path: String, against base: String) -> String {
    let absoluteBase = base.hasPrefix("/") ? base : FileManager.default.currentDirectoryPath + "/" + base
    let joined = path.hasPrefix("/") ? path : absoluteBase + "/" + path
    return (joined as NSString).standardizingPath
}

/// The directory every upper of a template lies in: the template's directories before the
/// one holding `{client}` (`/srv/clients/{client}` → `/srv/clients`); a plain upper itself.
func upperDirectoryRoot(_ upper: String) -> String {
    guard upper.contains(ExportConfiguration.clientPlaceholder) else { return upper }
    let components = upper.split(separator: "/", omittingEmptySubsequences: false)
    let index = components.firstIndex { $0.contains(ExportConfiguration.clientPlaceholder) } ?? components.endIndex
    let root = components[..<index].joined(separator: "/")
    return root.isEmpty ? "/" : root
}

/// True if `path` is `directory` or lies below it, comparing whole components.
func isSameOrInside(_ path: String, _ directory: String) -> Bool {
    let pathComponents = path.split(separator: "/")
    let directoryComponents = directory.split(separator: "/")
    return pathComponents.starts(with: directoryComponents)
}

/// True if two upper layers (plain or `{client}` templates) can be, or contain, one another.
func uppersOverlap(_ a: String, _ b: String) -> Bool {
    let aIsTemplate = a.contains(ExportConfiguration.clientPlaceholder)
    let bIsTemplate = b.contains(ExportConfiguration.clientPlaceholder)
    switch (aIsTemplate, bIsTemplate) {
    case (false, false):
        return isSameOrInside(a, b) || isSameOrInside(b, a)
    case (true, true):
        // Same client, same directory: one template inside (or equal to) the other.
        return isSameOrInside(a, b) || isSameOrInside(b, a)
    case (true, false):
        return isSameOrInside(b, upperDirectoryRoot(a)) || isSameOrInside(upperDirectoryRoot(a), b)
    case (false, true):
        return isSameOrInside(a, upperDirectoryRoot(b)) || isSameOrInside(upperDirectoryRoot(b), a)
    }
}

/// Why the directory `path` can neither be found nor created, or nil if it exists (as a
/// writable directory) or can be created.
func whyCannotCreate(_ path: String) -> String? {
    var info = stat()
    if stat(path, &info) == 0 {
        if info.st_mode & S_IFMT != S_IFDIR { return "\(path) exists and is not a directory" }
        return whyNotWritable(path)
    }
    // Walk up to the nearest existing ancestor: it must be a directory we may write in.
    var ancestor = (path as NSString).deletingLastPathComponent
    while !ancestor.isEmpty {
        if stat(ancestor, &info) == 0 {
            if info.st_mode & S_IFMT != S_IFDIR { return "\(ancestor) is a file, not a directory" }
            return whyNotWritable(ancestor)
        }
        if errno != ENOENT { return "\(ancestor): \(String(cString: strerror(errno)))" }
        if ancestor == "/" { break }
        ancestor = (ancestor as NSString).deletingLastPathComponent
    }
    return nil
}

private func whyNotWritable(_ directory: String) -> String? {
    var fileSystem = statvfs()
    if statvfs(directory, &fileSystem) == 0, fileSystem.f_flag & UInt(ST_RDONLY) != 0 {
        return "\(directory) is on a read-only file system"
    }
    if access(directory, W_OK | X_OK) != 0 {
        return "no write permission in \(directory) (running as uid \(getuid()))"
    }
    return nil
}

extension ClientMatch {
    /// True if both match exactly the same addresses (`10.0.0.0/24` and `10.0.0.7/255.255.255.0`).
    func coversSameClients(as other: ClientMatch) -> Bool {
        switch (self, other) {
        case (.everyone, .everyone): return true
        case (.host(let address), .host(let otherAddress)): return address == otherAddress
        case (.network(let address, let lengthA), .network(let otherAddress, let lengthB)):
            return lengthA == lengthB && address.sharesPrefix(with: otherAddress, length: lengthA)
        default: return false
        }
    }
}
