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
    /// The entry as the configuration spells it, e.g. `10.0.0.0/24(rw)`: what log messages
    /// quote so the operator finds the line to change.
    public var text: String

    public var description: String { "\(self.match)(\(self.options.description))" }

    /// Parses `SPEC` or `SPEC(opt,opt=value,...)`; SPEC is `*`, an address or a network in CIDR
    /// (`10.0.0.0/24`) or netmask (`10.0.0.0/255.255.255.0`) form.
    /// - Throws: `ConfigError` naming `key`, the entry and what is allowed.
    public init(parsing text: String, key: String) throws(ConfigError) {
        var ignored: [ConfigError] = []
        try self.init(parsing: text, key: key, warnings: &ignored)
    }

    /// As `init(parsing:key:)`, adding to `warnings` the options accepted without effect.
    public init(parsing text: String, key: String, warnings: inout [ConfigError]) throws(ConfigError) {
        let trimmed = text.trimmingSpaces
        self.text = trimmed
        var specText = trimmed
        var optionText: Substring = ""
        if let open = trimmed.firstIndex(of: "(") {
            guard trimmed.hasSuffix(")") else {
                throw ConfigError(
                    key: key, value: "\"\(text)\"",
                    allowed: "options in parentheses closed by ')', e.g. \"10.0.0.0/24(rw,no_root_squash)\"")
            }
            specText = String(trimmed[..<open])
            optionText = trimmed[trimmed.index(after: open)..<trimmed.index(before: trimmed.endIndex)]
        }
        self.match = try ClientRule.parseMatch(specText, key: key, entry: text)
        self.options = ClientOptions()
        for option in optionText.split(separator: ",") {
            try self.apply(option: String(option).trimmingSpaces, key: key, entry: text, warnings: &warnings)
        }
    }

    static func parseMatch(_ spec: String, key: String, entry: String) throws(ConfigError) -> ClientMatch {
        if spec == "*" { return .everyone }
        let allowed =
            "\"*\", an IPv4 or IPv6 address, or a network such as \"10.0.0.0/24\", \"10.0.0.0/255.255.255.0\" or \"fd00::/64\" (host names and @netgroups are not supported)"
        if let slash = spec.firstIndex(of: "/") {
            let maskText = String(spec[spec.index(after: slash)...])
            guard let address = IPAddress(String(spec[..<slash])) else {
                throw ConfigError(key: key, value: "\"\(entry)\"", allowed: allowed)
            }
            if let length = Int(maskText), length >= 0, length <= address.bitWidth {
                return .network(address, prefixLength: length)
            }
            // exports(5) also takes a dotted netmask for IPv4.
            if case .v4 = address, let mask = IPAddress(maskText), let length = mask.contiguousPrefixLength {
                return .network(address, prefixLength: length)
            }
            throw ConfigError(
                key: key, value: "\"\(entry)\"",
                allowed:
                    "a prefix length from 0 to \(address.bitWidth) or a contiguous netmask after the slash; \(allowed)")
        }
        guard let address = IPAddress(spec) else {
            throw ConfigError(key: key, value: "\"\(entry)\"", allowed: allowed)
        }
        return .host(address)
    }

    static let knownOptions =
        "rw, ro, root_squash, no_root_squash, all_squash, no_all_squash, anonuid=N, anongid=N, secure, insecure, sec=sys, sync, no_subtree_check, no_wdelay"

    mutating func apply(option: String, key: String, entry: String, warnings: inout [ConfigError]) throws(ConfigError) {
        let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
        let name = parts.first ?? ""
        let quoted = "\"\(entry)\""
        if parts.count == 2, name == "fsid" {
            // exports(5) puts the export's identifier in each client line; Strata has one per
            // export, so it lives in the [[export]] table.
            throw ConfigError(
                key: key, value: quoted,
                allowed:
                    "fsid= is not a client option in Strata: set id = \(parts[1]) in this [[export]] table (the export's identifier in file handles)"
            )
        }
        if parts.count == 2 {
            switch name {
            case "anonuid", "anongid":
                guard let id = UInt32(parts[1]) else {
                    throw ConfigError(key: key, value: quoted, allowed: "\(name)= takes a number from 0 to 4294967295")
                }
                if name == "anonuid" { self.options.anonymousUID = id } else { self.options.anonymousGID = id }
            case "sec":
                // Strata authenticates AUTH_SYS (and AUTH_NONE as the anonymous user) only.
                for flavor in parts[1].split(separator: ":", omittingEmptySubsequences: false) where flavor != "sys" {
                    throw ConfigError(
                        key: key, value: quoted,
                        allowed:
                            "sec=\(flavor) is not supported: Strata serves AUTH_SYS only (no Kerberos/RPCSEC_GSS); use sec=sys or drop the option"
                    )
                }
            default:
                throw ConfigError(
                    key: key, value: quoted,
                    allowed: "unknown option \"\(option)\"; options are \(ClientRule.knownOptions)")
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
        // What Strata does anyway: every reply is durable before it is sent and subtrees are
        // never checked.
        case "sync", "no_subtree_check", "no_wdelay": break
        case "async":
            warnings.append(
                ConfigError(
                    key: key, value: quoted,
                    allowed:
                        "option async is accepted but ignored: Strata makes every change durable before it replies (sync)"
                ))
        case "wdelay":
            warnings.append(
                ConfigError(
                    key: key, value: quoted,
                    allowed: "option wdelay is accepted but ignored: Strata does not delay writes to gather them"))
        case "subtree_check":
            warnings.append(
                ConfigError(
                    key: key, value: quoted,
                    allowed:
                        "option subtree_check is accepted but ignored: file handles name an export's namespace, never a subtree"
                ))
        default:
            throw ConfigError(
                key: key, value: quoted, allowed: "unknown option \"\(name)\"; options are \(ClientRule.knownOptions)")
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
