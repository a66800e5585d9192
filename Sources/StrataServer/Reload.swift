import Basics
import Foundation
import Logging

/// The outcome of a reload (`strata reload`, SIGHUP): what changed, or why nothing did.
public struct ReloadReport: Codable, Sendable, Equatable {
    /// True if the new configuration is running.
    public var applied: Bool
    /// Validation errors, each `FILE:LINE: key = value: what is allowed`; empty when applied.
    public var errors: [String] = []
    public var warnings: [String] = []
    /// What the reload changed, one line each (`export /x added`, `export /x: rule ... → ...`).
    public var changes: [String] = []
    /// Settings that differ in the file but take effect only after a restart.
    public var needsRestart: [String] = []

    public init(
        applied: Bool, errors: [String] = [], warnings: [String] = [], changes: [String] = [],
        needsRestart: [String] = []
    ) {
        self.applied = applied
        self.errors = errors
        self.warnings = warnings
        self.changes = changes
        self.needsRestart = needsRestart
    }
}

/// Re-reads the configuration the server was started with, validates it and applies what can
/// change while serving: exports, client rules, `[clients]`, `log_level` and `log_format`.
/// Reloads are serialised.
final class Reloader: Sendable {
    let registry: ExportRegistry
    let logger: Logger
    let logControl: LogControl?
    /// Reads the file again (with the command-line overrides); nil when the server was started
    /// from a configuration in memory.
    let source: (@Sendable () throws -> Configuration)?
    let running: Locked<Configuration>

    init(
        configuration: Configuration, registry: ExportRegistry, logger: Logger, logControl: LogControl?,
        source: (@Sendable () throws -> Configuration)?
    ) {
        self.running = Locked(configuration)
        self.registry = registry
        self.logger = logger
        self.logControl = logControl
        self.source = source
    }

    /// Reads the configuration again and applies it; never throws: the report says what
    /// happened, and the log says it too.
    func reloadFromSource() -> ReloadReport {
        guard let source = self.source else {
            return self.logged(
                ReloadReport(
                    applied: false, errors: ["this server was not started from a configuration file; nothing to reload"]
                ))
        }
        let fresh: Configuration
        do {
            fresh = try source()
        } catch let problems as ConfigurationErrors {
            return self.logged(
                ReloadReport(
                    applied: false, errors: problems.errors.map(\.description),
                    warnings: problems.warnings.map(\.description)))
        } catch {
            return self.logged(ReloadReport(applied: false, errors: ["\(error)"]))
        }
        return self.apply(fresh)
    }

    /// Applies `fresh`, keeping the running values of settings that need a restart.
    func apply(_ fresh: Configuration) -> ReloadReport {
        let report = self.running.withLock { running -> ReloadReport in
            var (changes, needsRestart) = describeChanges(from: running, to: fresh)
            var applied = fresh
            applied.server = running.server
            applied.server.logLevel = fresh.server.logLevel
            applied.server.logFormat = fresh.server.logFormat
            do {
                changes += try self.registry.reload(applied)
            } catch let error as ConfigError {
                // An export's id would change: nothing is applied.
                return ReloadReport(
                    applied: false, errors: fresh.located([error]).map(\.description),
                    warnings: fresh.warnings.map(\.description))
            } catch {
                return ReloadReport(applied: false, errors: ["\(error)"], warnings: fresh.warnings.map(\.description))
            }
            if let control = self.logControl {
                control.level = Logger.Level(rawValue: applied.server.logLevel) ?? control.level
                control.format = applied.server.logFormat
            }
            running = applied
            return ReloadReport(
                applied: true, warnings: fresh.warnings.map(\.description), changes: changes, needsRestart: needsRestart
            )
        }
        return self.logged(report)
    }

    var configuration: Configuration { self.running.withLock { $0 } }

    private func logged(_ report: ReloadReport) -> ReloadReport {
        if report.applied {
            self.logger.notice(
                "configuration reloaded",
                metadata: [
                    "exports": "\(self.configuration.exports.map(\.path).joined(separator: ","))",
                    "changes": "\(report.changes.isEmpty ? "none" : report.changes.joined(separator: "; "))",
                ])
            for line in report.needsRestart {
                self.logger.warning("setting changed in the file but not applied: \(line)")
            }
        } else {
            self.logger.error(
                "configuration reload rejected; keeping the running configuration",
                metadata: ["errors": "\(report.errors.joined(separator: "; "))"])
        }
        for warning in report.warnings {
            self.logger.warning("configuration: \(warning)")
        }
        return report
    }
}

/// What differs between the running configuration and a new one, as lines an operator reads:
/// changes a reload applies, and settings that need a restart.
func describeChanges(from old: Configuration, to new: Configuration) -> (changes: [String], needsRestart: [String]) {
    var changes: [String] = []
    var needsRestart: [String] = []
    let oldExports = Dictionary(old.exports.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
    let newPaths = Set(new.exports.map(\.path))
    for export in new.exports {
        guard let before = oldExports[export.path] else {
            let isRename = old.exports.contains { $0.exportID == export.exportID && !newPaths.contains($0.path) }
            if !isRename { changes.append("export \(export.path) added (\(summary(of: export)))") }
            continue
        }
        if before.lowers != export.lowers {
            changes.append(
                "export \(export.path): lowers \(before.lowers.joined(separator: ", ")) → \(export.lowers.joined(separator: ", "))"
            )
        }
        if before.upper != export.upper {
            changes.append("export \(export.path): upper \(before.upper ?? "(none)") → \(export.upper ?? "(none)")")
        }
        if before.clientKey != export.clientKey {
            changes.append(
                "export \(export.path): client_key \(before.clientKey.rawValue) → \(export.clientKey.rawValue)")
        }
        changes += ruleChanges(export: export.path, from: before.clients, to: export.clients)
    }
    for export in old.exports where !newPaths.contains(export.path) {
        // Renamed with its id (an `id` kept, or given the identifier it had): handles stay valid.
        if let renamed = new.exports.first(where: { $0.exportID == export.exportID && oldExports[$0.path] == nil }) {
            changes.append(
                "export \(export.path) renamed \(renamed.path) (id \(export.exportID)): its clients' file handles stay valid"
            )
        } else {
            changes.append("export \(export.path) removed: its clients' file handles are now stale")
        }
    }
    for (key, value) in new.clientKeys.sorted(by: { $0.key < $1.key }) where old.clientKeys[key] != value {
        if let before = old.clientKeys[key] {
            changes.append("[clients] \"\(key)\": \"\(before)\" → \"\(value)\"")
        } else {
            changes.append("[clients] \"\(key)\" = \"\(value)\" added")
        }
    }
    for key in old.clientKeys.keys.sorted() where new.clientKeys[key] == nil {
        changes.append("[clients] \"\(key)\" removed")
    }
    for key in Set(old.clientPins.keys).union(new.clientPins.keys).sorted()
    where old.clientPins[key] != new.clientPins[key] {
        let shown = { (pin: Int?) in pin.map { "version \($0)" } ?? "the newest version" }
        changes.append(
            "client \(key) pinned: \(shown(old.clientPins[key])) → \(shown(new.clientPins[key])) at its next mount")
    }
    let (a, b) = (old.server, new.server)
    if a.logLevel != b.logLevel { changes.append("server.log_level: \(a.logLevel) → \(b.logLevel)") }
    if a.logFormat != b.logFormat {
        changes.append("server.log_format: \(a.logFormat.rawValue) → \(b.logFormat.rawValue)")
    }
    let restartOnly: [(String, String, String)] = [
        ("server.listen", a.listen.joined(separator: ", "), b.listen.joined(separator: ", ")),
        ("server.nfs_port", "\(a.nfsPort)", "\(b.nfsPort)"),
        ("server.mount_port", "\(a.mountPort)", "\(b.mountPort)"),
        ("server.portmapper", a.portmapper.rawValue, b.portmapper.rawValue),
        ("server.state_dir", a.stateDirectory, b.stateDirectory),
        ("server.metrics", a.metrics ?? "(off)", b.metrics ?? "(off)"),
        ("server.max_record_bytes", "\(a.maxRecordBytes)", "\(b.maxRecordBytes)"),
        ("server.threads", "\(a.threads)", "\(b.threads)"),
        ("server.control_socket", a.controlSocket ?? "(in state_dir)", b.controlSocket ?? "(in state_dir)"),
    ]
    for (key, before, after) in restartOnly where before != after {
        needsRestart.append("\(key): \(before) → \(after) takes effect after a restart (systemctl restart strata)")
    }
    return (changes, needsRestart)
}

private func summary(of export: ExportConfiguration) -> String {
    var parts: [String] = []
    if !export.lowers.isEmpty { parts.append("lowers \(export.lowers.joined(separator: ", "))") }
    if let upper = export.upper { parts.append("upper \(upper)") }
    parts.append("rules \(export.clients.map(\.text).joined(separator: " "))")
    return parts.joined(separator: "; ")
}

/// Rules are matched by the clients they cover: a rule for the same clients with other
/// options is a change, others are added or removed.
private func ruleChanges(export path: String, from old: [ClientRule], to new: [ClientRule]) -> [String] {
    var lines: [String] = []
    for rule in new {
        if let before = old.first(where: { $0.match.coversSameClients(as: rule.match) }) {
            if before.options != rule.options {
                lines.append("export \(path): rule \(before.text) → \(rule.text)")
            }
        } else {
            lines.append("export \(path): rule \(rule.text) added")
        }
    }
    for rule in old where !new.contains(where: { $0.match.coversSameClients(as: rule.match) }) {
        lines.append("export \(path): rule \(rule.text) removed")
    }
    return lines
}
