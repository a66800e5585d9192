/// Which clients a rule applies to, as in exports(5): one host, a network, or everyone.
public enum ClientMatch: Sendable, Hashable, CustomStringConvertible {
    case host(IPAddress)
    case network(IPAddress, prefixLength: Int)
    case everyone

    func matches(_ address: IPAddress) -> Bool {
        switch self {
        case .host(let host): return host == address
        case .network(let network, let length): return network.sharesPrefix(with: address, length: length)
        case .everyone: return true
        }
    }

    /// How specific the match is: exportfs prefers a single host over any network, a longer
    /// prefix over a shorter one, and `*` last.
    var specificity: Int {
        switch self {
        case .host(let address): return address.bitWidth + 1
        case .network(_, let length): return length
        case .everyone: return -1
        }
    }

    public var description: String {
        switch self {
        case .host(let address): return "\(address)"
        case .network(let address, let length): return "\(address)/\(length)"
        case .everyone: return "*"
        }
    }
}

/// Options of one client rule, with exports(5) defaults: `ro`, `root_squash`, `secure`,
/// anonymous user and group 65534.
public struct ClientOptions: Sendable, Hashable {
    public var isReadOnly = true
    public var squashesRoot = true
    public var squashesAll = false
    public var anonymousUID: UInt32 = 65534
    public var anonymousGID: UInt32 = 65534
    /// `secure`: calls must come from a source port below 1024 (a privileged port).
    public var requiresPrivilegedPort = true

    public init() {}

    var description: String {
        [
            self.isReadOnly ? "ro" : "rw",
            self.squashesAll ? "all_squash" : (self.squashesRoot ? "root_squash" : "no_root_squash"),
            self.requiresPrivilegedPort ? "secure" : "insecure",
            "anonuid=\(self.anonymousUID)", "anongid=\(self.anonymousGID)",
        ].joined(separator: ",")
    }
}

/// One entry of an export's `clients` list, e.g. `10.0.0.0/24(rw,no_root_squash)`.
public struct ClientRule: Sendable, Hashable, CustomStringConvertible {
    public var match: ClientMatch
    public var options: ClientOptions

    public var description: String { "\(self.match)(\(self.options.description))" }

    /// Parses `SPEC` or `SPEC(opt,opt=value,...)`; SPEC is `*`, an address or a CIDR network.
    /// - Throws: `ConfigError` naming `key`, the entry and what is allowed.
    public init(parsing text: String, key: String) throws(ConfigError) {
        let trimmed = text.trimmingSpaces
        var specText = trimmed
        var optionText: Substring = ""
        if let open = trimmed.firstIndex(of: "(") {
            guard trimmed.hasSuffix(")") else {
                throw ConfigError(key: key, value: text, allowed: "options in parentheses closed by ')', e.g. \"10.0.0.0/24(rw,no_root_squash)\"")
            }
            specText = String(trimmed[..<open])
            optionText = trimmed[trimmed.index(after: open)..<trimmed.index(before: trimmed.endIndex)]
        }
        self.match = try ClientRule.parseMatch(specText, key: key, entry: text)
        self.options = ClientOptions()
        for option in optionText.split(separator: ",") {
            try self.apply(option: String(option).trimmingSpaces, key: key, entry: text)
        }
    }

    static func parseMatch(_ spec: String, key: String, entry: String) throws(ConfigError) -> ClientMatch {
        if spec == "*" { return .everyone }
        let allowed = "\"*\", an IPv4 or IPv6 address, or a network in CIDR form such as \"10.0.0.0/24\" or \"fd00::/64\""
        if let slash = spec.firstIndex(of: "/") {
            guard let address = IPAddress(String(spec[..<slash])),
                let length = Int(spec[spec.index(after: slash)...]),
                length >= 0, length <= address.bitWidth
            else {
                throw ConfigError(key: key, value: entry, allowed: allowed)
            }
            return .network(address, prefixLength: length)
        }
        guard let address = IPAddress(spec) else {
            throw ConfigError(key: key, value: entry, allowed: allowed)
        }
        return .host(address)
    }

    mutating func apply(option: String, key: String, entry: String) throws(ConfigError) {
        let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
        let name = parts.first ?? ""
        let allowed = "rw, ro, root_squash, no_root_squash, all_squash, no_all_squash, anonuid=N, anongid=N, secure, insecure"
        if parts.count == 2, name == "fsid" {
            // exports(5) puts the export's identifier in each client line; Strata has one per
            // export, so it lives in the [[export]] table.
            throw ConfigError(
                key: key, value: entry,
                allowed: "fsid= is not a client option in Strata: set id = \(parts[1]) in this [[export]] table (the export's identifier in file handles)")
        }
        if parts.count == 2 {
            guard let id = UInt32(parts[1]) else {
                throw ConfigError(key: key, value: entry, allowed: "\(name)= takes a number from 0 to 4294967295")
            }
            switch name {
            case "anonuid": self.options.anonymousUID = id
            case "anongid": self.options.anonymousGID = id
            default: throw ConfigError(key: key, value: entry, allowed: "options \(allowed)")
            }
            return
        }
        switch name {
        case "rw": self.options.isReadOnly = false
        case "ro": self.options.isReadOnly = true
        case "root_squash": self.options.squashesRoot = true
        case "no_root_squash": self.options.squashesRoot = false
        case "all_squash": self.options.squashesAll = true
        case "no_all_squash": self.options.squashesAll = false
        case "secure": self.options.requiresPrivilegedPort = true
        case "insecure": self.options.requiresPrivilegedPort = false
        // Accepted for compatibility with exports(5) lines; they change nothing here because
        // every reply is already durable (sync) and subtrees are never checked.
        case "sync", "async", "no_subtree_check", "subtree_check", "wdelay", "no_wdelay": break
        default: throw ConfigError(key: key, value: entry, allowed: "options \(allowed)")
        }
    }
}

extension Array where Element == ClientRule {
    /// The rule that applies to `address`: the most specific match wins, as exportfs does;
    /// among equally specific ones, the first listed.
    public func bestMatch(for address: IPAddress) -> ClientRule? {
        var best: ClientRule?
        for rule in self where rule.match.matches(address) {
            if best == nil || rule.match.specificity > (best?.match.specificity ?? Int.min) {
                best = rule
            }
        }
        return best
    }
}

extension String {
    var trimmingSpaces: String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
