import NFS3

// The text form of a boot script (Docs/BOOT-TRACE.md):
//
//   # strata boot script 1
//   # free comments
//   MS OVERLAP OP ARGUMENTS... = STATUS
//
// MS the call's start in milliseconds since the recording began (non-decreasing); OVERLAP `-`
// or the earlier calls still in flight when it started, as distances back (1 = the line
// before); OP and its arguments as in `BootOperation`; STATUS the recorded answer.

extension BootScript {
    /// The script as text, one call a line, parseable by `parse`.
    public var text: String {
        var out = Self.header + "\n"
        for note in self.notes { out += "# \(note)\n" }
        for (index, call) in self.calls.enumerated() {
            let overlap =
                call.overlapping.isEmpty ? "-" : call.overlapping.map { "\(index - $0)" }.joined(separator: ",")
            let time = formatMilliseconds(call.startMilliseconds)
            var fields = [time, overlap, call.operation.keyword]
            fields += call.operation.arguments
            fields += ["=", StatusNames.name(call.expectedStatus, mount: call.operation.isMount)]
            out += fields.joined(separator: " ") + "\n"
        }
        return out
    }

    /// Parses a whole script; any malformed line refuses the whole script (nothing is
    /// replayed from a script that is partly wrong). `source` names the file in messages.
    public static func parse(_ text: String, source: String = "boot script") throws(BootScriptError) -> BootScript {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard let first = lines.first, first.hasPrefix(Self.header) else {
            throw BootScriptError(
                line: 1, message: "not a boot script: the first line must be '\(Self.header)'", source: source)
        }
        var notes: [String] = []
        var calls: [BootCall] = []
        var known = KnownPaths()
        var lastTime = 0.0
        for (offset, raw) in lines.enumerated().dropFirst() {
            let number = offset + 1
            func fail(_ message: String) -> BootScriptError {
                BootScriptError(line: number, message: message, source: source)
            }
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : raw
            if line.hasPrefix("#") {
                if calls.isEmpty {
                    notes.append(line.hasPrefix("# ") ? String(line.dropFirst(2)) : String(line.dropFirst()))
                }
                continue
            }
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard fields.count >= 5, fields[fields.count - 2] == "=" else {
                throw fail("expected 'MS OVERLAP OP ARGUMENTS... = STATUS', got '\(line.prefix(80))'")
            }
            guard let time = Double(fields[0]), time.isFinite, time >= 0 else {
                throw fail("the start time '\(fields[0])' is not a number of milliseconds")
            }
            guard time >= lastTime else {
                throw fail(
                    "the start time \(fields[0]) ms is before the previous line's (\(formatMilliseconds(lastTime)) ms): lines are in start order"
                )
            }
            lastTime = time
            let index = calls.count
            var overlapping: [Int] = []
            if fields[1] != "-" {
                for part in fields[1].split(separator: ",", omittingEmptySubsequences: false) {
                    guard let back = Int(part), back >= 1 else {
                        throw fail(
                            "OVERLAP '\(fields[1])' must be '-' or distances back to earlier calls (1 = the call before)"
                        )
                    }
                    guard back <= index else {
                        throw fail("OVERLAP \(back) reaches before the first call (this is call \(index + 1))")
                    }
                    guard !overlapping.contains(index - back) else {
                        throw fail("OVERLAP '\(fields[1])' names a call twice")
                    }
                    overlapping.append(index - back)
                }
            }
            let keyword = fields[2]
            let arguments = Array(fields[3..<(fields.count - 2)])
            let operation: BootOperation
            do {
                operation = try BootOperation(keyword: keyword, arguments: arguments)
            } catch {
                throw fail(error.message)
            }
            guard let status = StatusNames.value(fields[fields.count - 1], mount: operation.isMount) else {
                throw fail("unknown status '\(fields[fields.count - 1])' (OK, NOENT, ACCES, EXIST, ... or a number)")
            }
            if let problem = known.check(operation) { throw fail(problem) }
            known.apply(operation, succeeded: status == 0)
            calls.append(
                BootCall(
                    line: number, startMilliseconds: time, overlapping: overlapping, operation: operation,
                    expectedStatus: status))
        }
        guard !calls.isEmpty else {
            throw BootScriptError(line: lines.count, message: "the script has no calls", source: source)
        }
        return BootScript(calls: calls, notes: notes)
    }
}

func formatMilliseconds(_ value: Double) -> String {
    let micro = Int64((value * 1000).rounded())
    let fraction = String(micro % 1000)
    return "\(micro / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
}

struct OperationSyntaxError: Error { var message: String }

extension BootOperation {
    /// The arguments as the script writes them.
    var arguments: [String] {
        switch self {
        case .mount, .unmount, .null: return []
        case .getattr(let path), .readlink(let path), .fsstat(let path), .fsinfo(let path), .pathconf(let path):
            return [path]
        case .setattr(let path, let attributes): return [path, attributes.text]
        case .lookup(let dir, let name), .remove(let dir, let name), .rmdir(let dir, let name): return [dir, name]
        case .access(let path, let mask): return [path, "\(mask)"]
        case .read(let path, let offset, let count), .commit(let path, let offset, let count):
            return [path, "\(offset)", "\(count)"]
        case .write(let path, let offset, let count, let stable):
            return [path, "\(offset)", "\(count)", Self.stableNames[Int(stable.rawValue)]]
        case .create(let dir, let name, let mode, let attributes):
            return [dir, name, Self.createNames[Int(mode.rawValue)], attributes.text]
        case .mkdir(let dir, let name, let attributes): return [dir, name, attributes.text]
        case .symlink(let dir, let name, let target, let attributes): return [dir, name, target, attributes.text]
        case .mknod(let dir, let name, let fileType): return [dir, name, Self.typeName(fileType)]
        case .rename(let dir, let name, let toDir, let toName): return [dir, name, toDir, toName]
        case .link(let path, let dir, let name): return [path, dir, name]
        case .readdir(let dir, let continued, let count): return [dir, continued ? "+" : "0", "\(count)"]
        case .readdirplus(let dir, let continued, let dircount, let maxcount):
            return [dir, continued ? "+" : "0", "\(dircount)", "\(maxcount)"]
        }
    }

    static let stableNames = ["unstable", "datasync", "filesync"]
    static let createNames = ["unchecked", "guarded", "exclusive"]
    static func typeName(_ type: FileType3) -> String {
        switch type {
        case .reg: return "reg"
        case .dir: return "dir"
        case .blk: return "blk"
        case .chr: return "chr"
        case .lnk: return "lnk"
        case .sock: return "sock"
        case .fifo: return "fifo"
        }
    }

    init(keyword: String, arguments words: [String]) throws(OperationSyntaxError) {
        func expect(_ count: Int, _ usage: String) throws(OperationSyntaxError) {
            guard words.count == count else {
                throw OperationSyntaxError(
                    message:
                        "\(keyword) takes \(count) argument\(count == 1 ? "" : "s") (\(keyword)\(usage.isEmpty ? "" : " ")\(usage)), got \(words.count)"
                )
            }
        }
        func path(_ index: Int) throws(OperationSyntaxError) -> String {
            let text = words[index]
            guard text.hasPrefix("/") else {
                throw OperationSyntaxError(
                    message: "\(keyword): '\(text)' is not a path from the export root (starts with /)")
            }
            if text == "/" { return text }
            for component in text.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
                guard !component.isEmpty, component != ".", component != ".." else {
                    throw OperationSyntaxError(
                        message: "\(keyword): path '\(text)' has an empty, '.' or '..' component")
                }
                guard BootPath.decode(String(component)) != nil else {
                    throw OperationSyntaxError(message: "\(keyword): path '\(text)' has a malformed %XX escape")
                }
            }
            return text
        }
        func name(_ index: Int) throws(OperationSyntaxError) -> String {
            let text = words[index]
            guard !text.contains("/"), let bytes = BootPath.decode(text), !bytes.isEmpty, bytes.count <= 255 else {
                throw OperationSyntaxError(
                    message: "\(keyword): '\(text)' is not a file name (one component, 1-255 bytes, %XX escapes)")
            }
            return text
        }
        func number<T: FixedWidthInteger>(_ index: Int, _ what: String) throws(OperationSyntaxError) -> T {
            guard let value = T(words[index]) else {
                throw OperationSyntaxError(message: "\(keyword): \(what) '\(words[index])' is not a number in range")
            }
            return value
        }
        func attributes(_ index: Int) throws(OperationSyntaxError) -> BootAttributes {
            guard let value = BootAttributes(text: words[index]) else {
                throw OperationSyntaxError(
                    message:
                        "\(keyword): attributes '\(words[index])' must be '-' or key=value,... (mode=OCTAL uid gid size atime=server|client mtime=server|client)"
                )
            }
            return value
        }
        func cookie(_ index: Int) throws(OperationSyntaxError) -> Bool {
            switch words[index] {
            case "0": return false
            case "+": return true
            default:
                throw OperationSyntaxError(
                    message: "\(keyword): cookie '\(words[index])' must be 0 (first page) or + (the next page)")
            }
        }
        switch keyword {
        case "MNT": try expect(0, ""); self = .mount
        case "UMNT": try expect(0, ""); self = .unmount
        case "NULL": try expect(0, ""); self = .null
        case "GETATTR": try expect(1, "PATH"); self = .getattr(try path(0))
        case "READLINK": try expect(1, "PATH"); self = .readlink(try path(0))
        case "FSSTAT": try expect(1, "PATH"); self = .fsstat(try path(0))
        case "FSINFO": try expect(1, "PATH"); self = .fsinfo(try path(0))
        case "PATHCONF": try expect(1, "PATH"); self = .pathconf(try path(0))
        case "SETATTR": try expect(2, "PATH ATTRIBUTES"); self = .setattr(try path(0), try attributes(1))
        case "LOOKUP":
            try expect(2, "DIR NAME")
            let entryName = try name(1)
            self = .lookup(dir: try path(0), name: entryName)
        case "ACCESS": try expect(2, "PATH MASK"); self = .access(try path(0), mask: try number(1, "mask"))
        case "READ":
            try expect(3, "PATH OFFSET COUNT");
            self = .read(try path(0), offset: try number(1, "offset"), count: try number(2, "count"))
        case "COMMIT":
            try expect(3, "PATH OFFSET COUNT");
            self = .commit(try path(0), offset: try number(1, "offset"), count: try number(2, "count"))
        case "WRITE":
            try expect(4, "PATH OFFSET COUNT unstable|datasync|filesync")
            guard let stable = Self.stableNames.firstIndex(of: words[3]) else {
                throw OperationSyntaxError(message: "WRITE: '\(words[3])' must be unstable, datasync or filesync")
            }
            self = .write(
                try path(0), offset: try number(1, "offset"), count: try number(2, "count"),
                stable: StableHow3(rawValue: UInt32(stable))!)
        case "CREATE":
            try expect(4, "DIR NAME unchecked|guarded|exclusive ATTRIBUTES")
            guard let mode = Self.createNames.firstIndex(of: words[2]) else {
                throw OperationSyntaxError(message: "CREATE: '\(words[2])' must be unchecked, guarded or exclusive")
            }
            self = .create(
                dir: try path(0), name: try name(1), mode: CreateMode3(rawValue: UInt32(mode))!, try attributes(3))
        case "MKDIR":
            try expect(3, "DIR NAME ATTRIBUTES"); self = .mkdir(dir: try path(0), name: try name(1), try attributes(2))
        case "SYMLINK":
            try expect(4, "DIR NAME TARGET ATTRIBUTES")
            guard BootPath.decode(words[2]) != nil else {
                throw OperationSyntaxError(message: "SYMLINK: target '\(words[2])' has a malformed %XX escape")
            }
            self = .symlink(dir: try path(0), name: try name(1), target: words[2], try attributes(3))
        case "MKNOD":
            try expect(3, "DIR NAME fifo|sock|chr|blk")
            guard let type = FileType3.allCases.first(where: { Self.typeName($0) == words[2] }),
                [.fifo, .sock, .chr, .blk].contains(type)
            else {
                throw OperationSyntaxError(message: "MKNOD: type '\(words[2])' must be fifo, sock, chr or blk")
            }
            self = .mknod(dir: try path(0), name: try name(1), type: type)
        case "REMOVE": try expect(2, "DIR NAME"); self = .remove(dir: try path(0), name: try name(1))
        case "RMDIR": try expect(2, "DIR NAME"); self = .rmdir(dir: try path(0), name: try name(1))
        case "RENAME":
            try expect(4, "DIR NAME TODIR TONAME")
            self = .rename(dir: try path(0), name: try name(1), toDir: try path(2), toName: try name(3))
        case "LINK": try expect(3, "PATH DIR NAME"); self = .link(try path(0), dir: try path(1), name: try name(2))
        case "READDIR":
            try expect(3, "DIR 0|+ COUNT")
            self = .readdir(try path(0), continued: try cookie(1), count: try number(2, "count"))
        case "READDIRPLUS":
            try expect(4, "DIR 0|+ DIRCOUNT MAXCOUNT")
            self = .readdirplus(
                try path(0), continued: try cookie(1), dircount: try number(2, "dircount"),
                maxcount: try number(3, "maxcount"))
        default:
            throw OperationSyntaxError(
                message:
                    "unknown operation '\(keyword)' (MNT UMNT NULL GETATTR SETATTR LOOKUP ACCESS READLINK READ WRITE CREATE MKDIR SYMLINK MKNOD REMOVE RMDIR RENAME LINK READDIR READDIRPLUS FSSTAT FSINFO PATHCONF COMMIT)"
            )
        }
        // "." and ".." are lookups only: a created name is a real one.
        switch self {
        case .create(_, let newName, _, _), .mkdir(_, let newName, _), .symlink(_, let newName, _, _),
            .mknod(_, let newName, _),
            .remove(_, let newName),
            .rmdir(_, let newName), .link(_, _, let newName):
            if newName == "." || newName == ".." {
                throw OperationSyntaxError(message: "\(keyword): '\(newName)' cannot be created or removed")
            }
        case .rename(_, let newName, _, let toName):
            if newName == "." || newName == ".." || toName == "." || toName == ".." {
                throw OperationSyntaxError(message: "RENAME: '.' and '..' cannot be renamed")
            }
        default: break
        }
    }
}

extension BootAttributes {
    var text: String {
        var parts: [String] = []
        if let mode { parts.append("mode=" + String(mode, radix: 8)) }
        if let uid { parts.append("uid=\(uid)") }
        if let gid { parts.append("gid=\(gid)") }
        if let size { parts.append("size=\(size)") }
        if let atime { parts.append("atime=\(atime.rawValue)") }
        if let mtime { parts.append("mtime=\(mtime.rawValue)") }
        return parts.isEmpty ? "-" : parts.joined(separator: ",")
    }

    init?(text: String) {
        self.init()
        if text == "-" { return }
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { return nil }
            switch pair[0] {
            case "mode":
                guard let value = UInt32(pair[1], radix: 8), value <= 0o7777 else { return nil }; self.mode = value
            case "uid": guard let value = UInt32(pair[1]) else { return nil }; self.uid = value
            case "gid": guard let value = UInt32(pair[1]) else { return nil }; self.gid = value
            case "size": guard let value = UInt64(pair[1]) else { return nil }; self.size = value
            case "atime": guard let value = Time(rawValue: pair[1]) else { return nil }; self.atime = value
            case "mtime": guard let value = Time(rawValue: pair[1]) else { return nil }; self.mtime = value
            default: return nil
            }
        }
    }
}

/// The paths a script can name at each line: the root after MNT, what a successful LOOKUP,
/// CREATE, MKDIR, SYMLINK, MKNOD, LINK or RENAME made known, and any child of a directory
/// READDIRPLUS listed (its handles come with the listing). A call on another path could not
/// be replayed: the replaying client would have no handle for it.
struct KnownPaths {
    var paths: Set<String> = []
    var listed: Set<String> = []

    func isKnown(_ path: String) -> Bool {
        self.paths.contains(path) || (path != "/" && self.listed.contains(BootPath.parent(path)))
    }

    func check(_ operation: BootOperation) -> String? {
        for path in operation.inputPaths where !self.isKnown(path) {
            if self.paths.isEmpty { return "\(operation.keyword) \(path) before any MNT: the client has no handle yet" }
            let parent = BootPath.parent(path)
            return
                "\(operation.keyword) names \(path), which no earlier line looks up (LOOKUP \(parent) \(path.split(separator: "/").last.map(String.init) ?? "") or READDIRPLUS \(parent))"
        }
        return nil
    }

    mutating func apply(_ operation: BootOperation, succeeded: Bool) {
        guard succeeded else { return }
        switch operation {
        case .mount: self.paths.insert("/")
        case .lookup(let dir, let name), .create(let dir, let name, _, _), .mkdir(let dir, let name, _),
            .symlink(let dir, let name, _, _),
            .mknod(let dir, let name, _), .link(_, let dir, let name):
            self.paths.insert(BootPath.join(dir, name))
        case .readdirplus(let dir, _, _, _): self.listed.insert(dir)
        case .rename(let dir, let name, let toDir, let toName):
            let from = BootPath.join(dir, name)
            let to = BootPath.join(toDir, toName)
            for path in self.paths where path == from || path.hasPrefix(from + "/") {
                self.paths.insert(to + path.dropFirst(from.count))
            }
            for path in self.listed where path == from || path.hasPrefix(from + "/") {
                self.listed.insert(to + path.dropFirst(from.count))
            }
            self.paths.insert(to)
        default: break
        }
    }
}
