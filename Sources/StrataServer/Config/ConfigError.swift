/// A configuration problem, naming the key, the offending value and what is allowed, so the
/// operator can fix the file without reading code. Keys of the file read `server.nfs_port`;
/// command-line overrides read `--nfs-port`.
public struct ConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    public var key: String
    public var value: String
    public var allowed: String
    public var file: String?
    /// The line of `file` the key (or the list entry) is on, when known.
    public var line: Int?
    /// For a list key (`lowers`, `clients`): the position of the offending entry, so its own
    /// line can be named when the list spans several.
    var entry: Int?

    public init(key: String, value: String, allowed: String, file: String? = nil, line: Int? = nil) {
        self.key = key
        self.value = value
        self.allowed = allowed
        self.file = file
        self.line = line
    }

    init(key: String, value: String, allowed: String, entry: Int?) {
        self.init(key: key, value: value, allowed: allowed)
        self.entry = entry
    }

    /// True for a command-line option rather than a key of the file.
    var isCommandLineOption: Bool { self.key.hasPrefix("--") }

    /// `FILE:LINE: key = value: what is allowed`, as compilers print, so editors jump to it.
    public var description: String {
        if self.key == ConfigError.syntaxKey {
            return "\(self.file.map { "\($0):" } ?? "line ")\(self.line.map { "\($0)" } ?? "?"): \(self.allowed)"
        }
        var location = ""
        if !self.isCommandLineOption {
            switch (self.file, self.line) {
            case (let file?, let line?): location = "\(file):\(line): "
            case (let file?, nil): location = "\(file): "
            case (nil, let line?): location = "line \(line): "
            case (nil, nil): break
            }
        }
        let what = self.isCommandLineOption ? "\(self.key) \(self.value)" : "\(self.key) = \(self.value)"
        return "\(location)\(what): \(self.allowed)"
    }
}

/// Every error of a configuration, not only the first, and its warnings (options accepted but
/// without effect), in file order.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public var warnings: [ConfigError]

    public init(errors: [ConfigError], warnings: [ConfigError] = []) {
        self.errors = errors
        self.warnings = warnings
    }

    /// One error a line.
    public var description: String { self.errors.map(\.description).joined(separator: "\n") }
}

/// Gathers problems while a configuration is read, so one pass reports all of them.
struct ProblemList {
    var errors: [ConfigError] = []
    var warnings: [ConfigError] = []

    /// Runs `body`; an error it throws is recorded instead of ending the check.
    mutating func check(_ body: () throws(ConfigError) -> Void) {
        do {
            try body()
        } catch {
            self.errors.append(error)
        }
    }

    mutating func error(_ error: ConfigError) { self.errors.append(error) }

    /// Of two directories that must not hold one another, the error of whichever lies inside the other (the same
    /// directory counts as the first inside the second).
    mutating func refuseNesting(
        _ first: String, _ firstInside: @autoclosure () -> ConfigError, _ second: String,
        _ secondInside: @autoclosure () -> ConfigError
    ) {
        if isSameOrInside(first, second) {
            self.error(firstInside())
        } else if isSameOrInside(second, first) {
            self.error(secondInside())
        }
    }

    mutating func warning(_ warning: ConfigError) { self.warnings.append(warning) }
}
