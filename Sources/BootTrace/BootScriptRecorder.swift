import Foundation
import NFS3
import NIOCore
import XDR

/// One call of a server's call trace (`strata serve --trace FILE`, one line each).
public struct TracedCall: Sendable {
    public var start: Int64
    public var end: Int64
    public var peer: String
    public var program: UInt32
    public var version: UInt32
    public var procedure: UInt32
    public var succeeded: Bool
    public var arguments: [UInt8]
    public var reply: [UInt8]

    /// The peer's address without the port.
    public var peerAddress: String {
        guard let colon = self.peer.lastIndex(of: ":") else { return self.peer }
        return String(self.peer[..<colon])
    }
}

/// Reading a call trace and turning it into a boot script.
///
/// Why paths are rebuilt here from the replies rather than told by the server: a union file
/// handle names an object (its identity survives renames, copy-up, hard links), not a path, and
/// the server keeps no handle-to-path table it could trust (a handle may outlive the name it
/// was looked up by). The client learnt every handle it used from a reply: MNT (the root),
/// LOOKUP, CREATE/MKDIR/SYMLINK/MKNOD, READDIRPLUS. Replaying those replies in order gives each
/// handle the path the client knew it by, with no server internals, so the converter also
/// works on a trace of any other NFSv3 server.
public enum BootScriptRecorder {
    public struct Report: Sendable {
        public var script: BootScript
        /// Calls left out: on a handle no earlier reply gave, refused by RPC, or of a
        /// procedure a script does not replay (MOUNT EXPORT/DUMP).
        public var skipped: [String: Int]
    }

    public struct TraceError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { self.message }
    }

    /// Parses the trace's lines (comments skipped); a malformed line fails naming its number.
    public static func parseTrace(_ text: String, source: String) throws -> [TracedCall] {
        var calls: [TracedCall] = []
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: " ").map(String.init)
            func bytes(_ field: String) -> [UInt8]? {
                field == "-" ? [] : Data(base64Encoded: field).map { [UInt8]($0) }
            }
            guard fields.count == 10, let start = Int64(fields[0]), let end = Int64(fields[1]),
                let program = UInt32(fields[3]),
                let version = UInt32(fields[4]), let procedure = UInt32(fields[5]), let arguments = bytes(fields[8]),
                let reply = bytes(fields[9])
            else {
                throw TraceError(
                    message:
                        "\(source):\(offset + 1): not a call trace line (START END PEER PROG VERS PROC XID REPLY ARGS BODY)"
                )
            }
            calls.append(
                TracedCall(
                    start: start, end: end, peer: fields[2], program: program, version: version, procedure: procedure,
                    succeeded: fields[7] == "ok", arguments: arguments, reply: reply))
        }
        return calls
    }

    /// The boot script of the calls of `client` (an address; nil: the only client in the trace).
    public static func script(from trace: [TracedCall], client: String? = nil, notes: [String] = []) throws -> Report {
        let clients = Set(trace.map(\.peerAddress))
        let chosen: String
        if let client {
            guard clients.contains(client) else {
                throw TraceError(
                    message:
                        "no call from \(client) in the trace (clients: \(clients.sorted().joined(separator: ", ")))")
            }
            chosen = client
        } else {
            guard clients.count == 1, let only = clients.first else {
                throw TraceError(
                    message:
                        "the trace holds calls from \(clients.count) clients (\(clients.sorted().joined(separator: ", "))): choose one with --client"
                )
            }
            chosen = only
        }
        let calls = trace.filter { $0.peerAddress == chosen }.sorted { ($0.start, $0.end) < ($1.start, $1.end) }
        var converter = Converter()
        var emitted: [(call: TracedCall, operation: BootOperation, status: UInt32)] = []
        for call in calls {
            guard call.succeeded else { converter.skip("refused by RPC"); continue }
            if let (operation, status) = converter.convert(call) { emitted.append((call, operation, status)) }
        }
        guard let origin = emitted.first?.call.start else {
            throw TraceError(message: "no replayable call from \(chosen) in the trace")
        }
        var script: [BootCall] = []
        for (index, entry) in emitted.enumerated() {
            // Overlap as the server saw it: an earlier call still running when this one started.
            let overlapping = (0..<index).filter { emitted[$0].call.end > entry.call.start }
            script.append(
                BootCall(
                    line: 0, startMilliseconds: Double(entry.call.start - origin) / 1000, overlapping: overlapping,
                    operation: entry.operation, expectedStatus: entry.status))
        }
        return Report(script: BootScript(calls: script, notes: notes), skipped: converter.skipped)
    }
}

/// The handle-to-path state of one recorded client, fed each call in start order.
struct Converter {
    var paths: [[UInt8]: String] = [:]
    var skipped: [String: Int] = [:]

    mutating func skip(_ reason: String) { self.skipped[reason, default: 0] += 1 }

    func path(_ handle: FileHandle3) -> String? { self.paths[handle.data] }

    mutating func learn(_ handle: FileHandle3?, _ path: String) {
        guard let handle, self.paths[handle.data] == nil else { return }
        self.paths[handle.data] = path
    }

    mutating func convert(_ call: TracedCall) -> (BootOperation, UInt32)? {
        var arguments = ByteBuffer(bytes: call.arguments)
        var reply = ByteBuffer(bytes: call.reply)
        if call.program == Mount.program {
            guard call.version == Mount.version3 else { self.skip("MOUNT v1"); return nil }
            switch MountProcedure(rawValue: call.procedure) {
            case .mnt:
                guard let result = try? MountRes3(xdr: &reply) else { self.skip("undecodable MNT reply"); return nil }
                if case .ok(let ok) = result { self.learn(ok.fhandle, "/") }
                return (.mount, result.status.rawValue)
            case .umnt: return (.unmount, 0)
            default:
                self.skip("MOUNT \(MountProcedure(rawValue: call.procedure)?.name ?? "proc \(call.procedure)")");
                return nil
            }
        }
        guard call.program == NFS3.program, call.version == NFS3.version,
            let procedure = NFS3Procedure(rawValue: call.procedure)
        else {
            self.skip("not NFSv3 or MOUNT v3"); return nil
        }
        guard let status = reply.getInteger(at: reply.readerIndex, as: UInt32.self) ?? (procedure == .null ? 0 : nil)
        else {
            self.skip("reply without a status"); return nil
        }
        do {
            let result = try self.operation(procedure, &arguments, &reply, status: status)
            if result == nil { self.skip("on a handle no earlier reply gave") }
            return result.map { ($0, status) }
        } catch {
            self.skip("undecodable \(procedure.name)")
            return nil
        }
    }

    mutating func operation(
        _ procedure: NFS3Procedure, _ a: inout ByteBuffer, _ r: inout ByteBuffer, status: UInt32
    ) throws -> BootOperation? {
        let ok = status == 0
        switch procedure {
        case .null: return .null
        case .getattr: return self.path(try GetAttr3Args(xdr: &a).object).map { .getattr($0) }
        case .setattr:
            let args = try SetAttr3Args(xdr: &a)
            return self.path(args.object).map { .setattr($0, BootAttributes(args.newAttributes)) }
        case .lookup:
            let args = try Lookup3Args(xdr: &a)
            guard let dir = self.path(args.what.dir) else { return nil }
            let name = BootPath.encode(args.what.name)
            if ok, case .ok(let body) = try Lookup3Res(xdr: &r) { self.learn(body.object, BootPath.join(dir, name)) }
            return .lookup(dir: dir, name: name)
        case .access:
            let args = try Access3Args(xdr: &a)
            return self.path(args.object).map { .access($0, mask: args.access) }
        case .readlink: return self.path(try ReadLink3Args(xdr: &a).symlink).map { .readlink($0) }
        case .read:
            let args = try Read3Args(xdr: &a)
            return self.path(args.file).map { .read($0, offset: args.offset, count: args.count) }
        case .write:
            // The data was cut from the trace: read the header by hand.
            let file = try FileHandle3(xdr: &a)
            let offset = try a.readXDRUInt64()
            let count = try a.readXDRUInt32()
            let stable = try StableHow3(xdr: &a)
            return self.path(file).map { .write($0, offset: offset, count: count, stable: stable) }
        case .create:
            let args = try Create3Args(xdr: &a)
            guard let dir = self.path(args.where.dir) else { return nil }
            let name = BootPath.encode(args.where.name)
            if ok, case .ok(let body) = try Create3Res(xdr: &r) {
                self.learn(body.obj.handle, BootPath.join(dir, name))
            }
            let attributes: BootAttributes
            switch args.how {
            case .unchecked(let requested), .guarded(let requested): attributes = BootAttributes(requested)
            case .exclusive: attributes = BootAttributes()
            }
            return .create(dir: dir, name: name, mode: args.how.mode, attributes)
        case .mkdir:
            let args = try MkDir3Args(xdr: &a)
            guard let dir = self.path(args.where.dir) else { return nil }
            let name = BootPath.encode(args.where.name)
            if ok, case .ok(let body) = try MkDir3Res(xdr: &r) { self.learn(body.obj.handle, BootPath.join(dir, name)) }
            return .mkdir(dir: dir, name: name, BootAttributes(args.attributes))
        case .symlink:
            let args = try Symlink3Args(xdr: &a)
            guard let dir = self.path(args.where.dir) else { return nil }
            let name = BootPath.encode(args.where.name)
            if ok, case .ok(let body) = try Symlink3Res(xdr: &r) {
                self.learn(body.obj.handle, BootPath.join(dir, name))
            }
            return .symlink(
                dir: dir, name: name, target: BootPath.encode(args.symlink.symlinkData),
                BootAttributes(args.symlink.symlinkAttributes))
        case .mknod:
            let args = try MkNod3Args(xdr: &a)
            guard let dir = self.path(args.where.dir), let type = FileType3(rawValue: args.what.typeValue) else {
                return nil
            }
            let name = BootPath.encode(args.where.name)
            if ok, case .ok(let body) = try MkNod3Res(xdr: &r) { self.learn(body.obj.handle, BootPath.join(dir, name)) }
            return .mknod(dir: dir, name: name, type: type)
        case .remove:
            let args = try Remove3Args(xdr: &a)
            return self.path(args.object.dir).map { .remove(dir: $0, name: BootPath.encode(args.object.name)) }
        case .rmdir:
            let args = try RmDir3Args(xdr: &a)
            return self.path(args.object.dir).map { .rmdir(dir: $0, name: BootPath.encode(args.object.name)) }
        case .rename:
            let args = try Rename3Args(xdr: &a)
            guard let from = self.path(args.from.dir), let to = self.path(args.to.dir) else { return nil }
            let (name, toName) = (BootPath.encode(args.from.name), BootPath.encode(args.to.name))
            if ok {
                // Every handle known under the old name follows it.
                let old = BootPath.join(from, name)
                let new = BootPath.join(to, toName)
                for (handle, path) in self.paths where path == old || path.hasPrefix(old + "/") {
                    self.paths[handle] = new + path.dropFirst(old.count)
                }
            }
            return .rename(dir: from, name: name, toDir: to, toName: toName)
        case .link:
            let args = try Link3Args(xdr: &a)
            guard let file = self.path(args.file), let dir = self.path(args.link.dir) else { return nil }
            return .link(file, dir: dir, name: BootPath.encode(args.link.name))
        case .readdir:
            let args = try ReadDir3Args(xdr: &a)
            return self.path(args.dir).map { .readdir($0, continued: args.cookie != 0, count: args.count) }
        case .readdirplus:
            let args = try ReadDirPlus3Args(xdr: &a)
            guard let dir = self.path(args.dir) else { return nil }
            if ok, case .ok(let body) = try ReadDirPlus3Res(xdr: &r) {
                for entry in body.entries where entry.name != Array(".".utf8) && entry.name != Array("..".utf8) {
                    self.learn(entry.nameHandle.handle, BootPath.join(dir, BootPath.encode(entry.name)))
                }
            }
            return .readdirplus(dir, continued: args.cookie != 0, dircount: args.dircount, maxcount: args.maxcount)
        case .fsstat: return self.path(try FSStat3Args(xdr: &a).fsroot).map { .fsstat($0) }
        case .fsinfo: return self.path(try FSInfo3Args(xdr: &a).fsroot).map { .fsinfo($0) }
        case .pathconf: return self.path(try PathConf3Args(xdr: &a).object).map { .pathconf($0) }
        case .commit:
            let args = try Commit3Args(xdr: &a)
            return self.path(args.file).map { .commit($0, offset: args.offset, count: args.count) }
        }
    }
}

extension BootAttributes {
    init(_ s: SetAttributes3) {
        func time(_ t: SetTime3) -> Time? {
            switch t {
            case .dontChange: return nil
            case .setToServerTime: return .server
            case .setToClientTime: return .client
            }
        }
        self.init(mode: s.mode, uid: s.uid, gid: s.gid, size: s.size, atime: time(s.atime), mtime: time(s.mtime))
    }

    /// The sattr3 to send; a client-set time is now.
    public var setAttributes: SetAttributes3 {
        func time(_ t: Time?) -> SetTime3 {
            switch t {
            case nil: return .dontChange
            case .server: return .setToServerTime
            case .client:
                let now = Date().timeIntervalSince1970
                return .setToClientTime(
                    NFSTime3(seconds: UInt32(now), nseconds: UInt32((now - now.rounded(.down)) * 1e9)))
            }
        }
        return SetAttributes3(
            mode: self.mode, uid: self.uid, gid: self.gid, size: self.size, atime: time(self.atime),
            mtime: time(self.mtime))
    }
}
