/// A configuration problem, naming the key, the offending value and what is allowed, so the
/// operator can fix the file without reading code.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var key: String
    public var value: String
    public var allowed: String
    public var file: String?

    public init(key: String, value: String, allowed: String, file: String? = nil) {
        self.key = key
        self.value = value
        self.allowed = allowed
        self.file = file
    }

    public var description: String {
        let location = self.file.map { "\($0): " } ?? ""
        return "\(location)\(self.key) = \(self.value): \(self.allowed)"
    }
}
