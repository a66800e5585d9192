/// Finds the line of a key in TOML text, so every configuration error can say `FILE:LINE`
/// (TOMLKit reports lines for syntax errors only). It understands what Strata's files use:
/// `[table]` and `[[export]]` headers, `key = value` lines and string lists over several
/// lines; a key it cannot place gets its table's header line, or none.
struct SourceLocator {
    /// `server.nfs_port`, `export[1].clients`, `clients."10.0.0.17"` → line (1-based).
    private(set) var keyLines: [String: Int] = [:]
    /// `server`, `export[1]` → the line of the header.
    private(set) var tableLines: [String: Int] = [:]
    /// List key → the line of each string in it, in order.
    private(set) var entryLines: [String: [Int]] = [:]

    init(text: String) {
        var table = ""
        var exportCount = 0
        var openList: (key: String, depth: Int)?
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            let line = Substring(rawLine)
            if let list = openList {
                let depth = Self.scanStrings(line, depth: list.depth) {
                    self.entryLines[list.key, default: []].append(number)
                }
                openList = depth > 0 ? (list.key, depth) : nil
                continue
            }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.hasPrefix("[[") {
                let name = Self.headerName(trimmed.dropFirst(2))
                table = name == "export" ? "export[\(exportCount)]" : name
                if name == "export" { exportCount += 1 }
                self.tableLines[table] = self.tableLines[table] ?? number
                continue
            }
            if trimmed.hasPrefix("[") {
                table = Self.headerName(trimmed.dropFirst())
                self.tableLines[table] = self.tableLines[table] ?? number
                continue
            }
            guard let equals = Self.keyEnd(trimmed) else { continue }
            var key = trimmed[..<equals].strippingCharacters(" \t")
            if key.hasPrefix("'") && key.hasSuffix("'") && key.count >= 2 { key = "\"\(key.dropFirst().dropLast())\"" }
            let fullKey = table.isEmpty ? key : "\(table).\(key)"
            self.keyLines[fullKey] = self.keyLines[fullKey] ?? number
            let value = trimmed[trimmed.index(after: equals)...]
            let depth = Self.scanStrings(value, depth: 0) { self.entryLines[fullKey, default: []].append(number) }
            if depth > 0 { openList = (fullKey, depth) }
        }
    }

    /// The line `problem` is about: its list entry's, else its key's, else its table's.
    func line(of problem: ConfigError) -> Int? {
        let key = problem.key
        if let entry = problem.entry, let lines = self.entryLines[key], entry < lines.count { return lines[entry] }
        if let line = self.keyLines[key] { return line }
        // A key that is missing: the table that should hold it.
        var table = key
        while let dot = table.lastIndex(of: ".") {
            table = String(table[..<dot])
            if let line = self.tableLines[table] ?? self.keyLines[table] { return line }
        }
        return self.tableLines[key]
    }

    static func headerName(_ text: Substring) -> String {
        String(text.prefix { $0 != "]" }).strippingCharacters(" \t")
    }

    /// The index of the `=` ending a key, outside quotes; nil if the line holds none.
    static func keyEnd(_ line: Substring) -> Substring.Index? {
        var quote: Character?
        for index in line.indices {
            let character = line[index]
            if let open = quote {
                if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == "#" {
                return nil
            } else if character == "=" {
                return index
            }
        }
        return nil
    }

    /// Calls `found` for every string literal in `text` (a value, or a line of a list that
    /// started earlier at bracket depth `depth`) and returns the bracket depth at its end.
    static func scanStrings(_ text: Substring, depth start: Int, found: () -> Void) -> Int {
        var depth = start
        var quote: Character?
        var escaped = false
        for character in text {
            if let open = quote {
                if escaped {
                    escaped = false
                } else if character == "\\" && open == "\"" {
                    escaped = true
                } else if character == open {
                    quote = nil
                }
                continue
            }
            switch character {
            case "\"", "'":
                quote = character
                found()
            case "[": depth += 1
            case "]": depth -= 1
            case "#": return max(depth, 0)
            default: break
            }
        }
        return max(depth, 0)
    }
}

extension StringProtocol {
    func strippingCharacters(_ characters: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice.removeFirst() }
        while let last = slice.last, characters.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
