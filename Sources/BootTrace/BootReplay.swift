import NFS3
import NIOCore
import XDR

/// How a replaying client reaches the server: one RPC call, answered with the result body of
/// an accepted, successful reply. Anything else (a refusal, a timeout, a closed connection)
/// throws; the replay counts it as the call's error. The load generator's connections and the
/// tests' clients both fit.
public protocol BootReplayTransport: Sendable {
    func call(program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer) async throws -> ByteBuffer
    /// Where the replay of a client using this transport for NFS should run (its connection's event loop), so that
    /// awaiting a call does not move the replay to another thread; nil for the default executor.
    var taskExecutor: (any TaskExecutor)? { get }
}

extension BootReplayTransport {
    public var taskExecutor: (any TaskExecutor)? { nil }
}

/// A call of the replay that did not get the answer the recording got.
public struct BootReplayFailure: Sendable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(self.line): \(self.message)" }
}

/// What one client's replay of a boot script did.
public struct BootReplayResult: Sendable {
    /// From the first call sent to the last answer received.
    public var duration: Duration
    /// Each call's latency in nanoseconds, in completion order (calls never sent are absent).
    public var latencies: [UInt64]
    /// The same latencies with the call's index in the script.
    public var callLatencies: [(index: Int, nanoseconds: UInt64)]
    /// When each answered call was sent and answered, with its index in the script (the boot's timeline).
    public var callSpans: [(index: Int, sent: ContinuousClock.Instant, answered: ContinuousClock.Instant)] = []
    public var failures: [BootReplayFailure]
    /// Bytes sent in WRITE calls that the server accepted.
    public var bytesWritten: Int
    public var calls: Int
}

/// Replays a boot script as one client: mounts `export`, resolves the script's paths to its own
/// handles from the replies as it goes, and sends each call once every call that had finished
/// before it started in the recording has finished here (the calls that overlapped then may
/// overlap now). No think time: the client is as fast as the server lets it be.
public struct BootReplay: Sendable {
    public let script: BootScript
    public let export: String
    /// Written into the data of every WRITE, so each client's files can be told apart.
    public let clientTag: String

    public init(script: BootScript, export: String, clientTag: String) {
        self.script = script
        self.export = export
        self.clientTag = clientTag
    }

    /// The bytes a WRITE of `count` bytes at `offset` carries for `tag`: the tag's line
    /// repeated, positioned by the file offset (a file written in pieces reads as one pattern).
    public static func payload(tag: String, offset: UInt64, count: Int) -> [UInt8] {
        let unit = Array("strata boot replay: \(tag)\n".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        var from = Int(offset % UInt64(unit.count))
        while bytes.count < count {
            let take = min(unit.count - from, count - bytes.count)
            bytes.append(contentsOf: unit[from..<(from + take)])
            from = 0
        }
        return bytes
    }

    struct State {
        var handles: [String: FileHandle3] = [:]
        var cookies: [String: (UInt64, CookieVerifier3)] = [:]
    }

    struct Outcome: Sendable {
        var index: Int
        var status: UInt32?
        var failure: String?
        var latency: UInt64?
        var span: (sent: ContinuousClock.Instant, answered: ContinuousClock.Instant)?
        var learned: [(String, FileHandle3)] = []
        var forgotten: String?
        var renamed: (String, String)?
        var cookie: (String, UInt64, CookieVerifier3)?
        var written = 0
    }

    public func run(nfs: some BootReplayTransport, mount: some BootReplayTransport) async -> BootReplayResult {
        let calls = self.script.calls
        var state = State()
        var done = [Bool](repeating: false, count: calls.count)
        var lowest = 0
        var latencies: [UInt64] = []
        latencies.reserveCapacity(calls.count)
        var callLatencies: [(index: Int, nanoseconds: UInt64)] = []
        callLatencies.reserveCapacity(calls.count)
        var callSpans: [(index: Int, sent: ContinuousClock.Instant, answered: ContinuousClock.Instant)] = []
        callSpans.reserveCapacity(calls.count)
        var failures: [BootReplayFailure] = []
        var written = 0
        let start = ContinuousClock.now

        func absorb(_ outcome: Outcome) {
            done[outcome.index] = true
            while lowest < done.count && done[lowest] { lowest += 1 }
            if let latency = outcome.latency {
                latencies.append(latency)
                callLatencies.append((outcome.index, latency))
            }
            if let span = outcome.span { callSpans.append((outcome.index, span.sent, span.answered)) }
            written += outcome.written
            let call = calls[outcome.index]
            if let failure = outcome.failure {
                failures.append(BootReplayFailure(line: call.line, message: failure))
            } else if let status = outcome.status, status != call.expectedStatus {
                let mount = call.operation.isMount
                failures.append(
                    BootReplayFailure(
                        line: call.line,
                        message:
                            "\(call.operation.keyword) \(call.operation.arguments.joined(separator: " ")) answered \(StatusNames.name(status, mount: mount)), recorded \(StatusNames.name(call.expectedStatus, mount: mount))"
                    ))
            }
            guard outcome.status == 0 else { return }
            for (path, handle) in outcome.learned { state.handles[path] = handle }
            if let forgotten = outcome.forgotten { state.handles[forgotten] = nil }
            if let (from, to) = outcome.renamed {
                for (path, handle) in state.handles where path == from || path.hasPrefix(from + "/") {
                    state.handles[path] = nil
                    state.handles[to + path.dropFirst(from.count)] = handle
                }
            }
            if let (dir, cookie, verifier) = outcome.cookie { state.cookies[dir] = (cookie, verifier) }
        }

        await withTaskGroup(of: Outcome.self) { group in
            for index in calls.indices {
                // Wait until every earlier call that had finished before this one started in
                // the recording has finished here.
                let overlapping = Set(calls[index].overlapping)
                while !(lowest..<index).allSatisfy({ done[$0] || overlapping.contains($0) }) {
                    guard let outcome = await group.next() else { break }
                    absorb(outcome)
                }
                let prepared = self.prepare(index, calls[index], state)
                group.addTask {
                    await Self.execute(prepared, nfs: nfs, mount: mount)
                }
            }
            while let outcome = await group.next() { absorb(outcome) }
        }
        return BootReplayResult(
            duration: ContinuousClock.now - start, latencies: latencies, callLatencies: callLatencies,
            callSpans: callSpans, failures: failures, bytesWritten: written, calls: calls.count)
    }

    /// A call ready to send: its program, procedure and encoded arguments, and how to read the
    /// answer; or the reason it cannot be sent.
    struct Prepared: Sendable {
        var index: Int
        var program: UInt32 = NFS3.program
        var version: UInt32 = NFS3.version
        var procedure: UInt32 = 0
        /// Room for a call's arguments but a WRITE's data, so that encoding them does not grow the buffer.
        var arguments = ByteBufferAllocator().buffer(capacity: 256)
        var failure: String?
        var interpret: @Sendable (inout ByteBuffer, inout Outcome) throws -> Void = { _, _ in }
    }

    func prepare(_ index: Int, _ call: BootCall, _ state: State) -> Prepared {
        var prepared = Prepared(index: index)
        var missing: String?
        func handle(_ path: String) -> FileHandle3 {
            if let known = state.handles[path] { return known }
            if missing == nil { missing = path }
            return FileHandle3([])
        }
        func name(_ encoded: String) -> [UInt8] { BootPath.decode(encoded) ?? [] }
        func encode(_ value: some XDREncodable) { value.encode(xdr: &prepared.arguments) }
        // The status leads every NFSv3 result; procedures that teach handles read on.
        let statusOnly: @Sendable (inout ByteBuffer, inout Outcome) throws -> Void = { body, outcome in
            outcome.status = try body.readXDRUInt32()
        }
        prepared.interpret = statusOnly
        if let procedure = call.operation.procedure { prepared.procedure = procedure.rawValue }
        switch call.operation {
        case .mount:
            (prepared.program, prepared.version, prepared.procedure) = (
                Mount.program, Mount.version3, MountProcedure.mnt.rawValue
            )
            encode(DirPath(self.export))
            prepared.interpret = { body, outcome in
                let result = try MountRes3(xdr: &body)
                outcome.status = result.status.rawValue
                if case .ok(let ok) = result { outcome.learned = [("/", ok.fhandle)] }
            }
        case .unmount:
            (prepared.program, prepared.version, prepared.procedure) = (
                Mount.program, Mount.version3, MountProcedure.umnt.rawValue
            )
            encode(DirPath(self.export))
            prepared.interpret = { _, outcome in outcome.status = 0 }
        case .null:
            prepared.interpret = { _, outcome in outcome.status = 0 }
        case .getattr(let path): encode(GetAttr3Args(object: handle(path)))
        case .setattr(let path, let attributes):
            encode(SetAttr3Args(object: handle(path), newAttributes: attributes.setAttributes, guardCtime: nil))
        case .lookup(let dir, let entryName):
            encode(Lookup3Args(what: DirOpArgs3(dir: handle(dir), name: name(entryName))))
            let path = BootPath.join(dir, entryName)
            prepared.interpret = { body, outcome in
                let result = try Lookup3Res(xdr: &body)
                outcome.status = result.status.rawValue
                if case .ok(let ok) = result { outcome.learned = [(path, ok.object)] }
            }
        case .access(let path, let mask): encode(Access3Args(object: handle(path), access: mask))
        case .readlink(let path): encode(ReadLink3Args(symlink: handle(path)))
        case .read(let path, let offset, let count):
            encode(Read3Args(file: handle(path), offset: offset, count: count))
        case .write(let path, let offset, let count, let stable):
            let data = ByteBuffer(bytes: Self.payload(tag: self.clientTag, offset: offset, count: Int(count)))
            prepared.arguments.reserveCapacity(minimumWritableBytes: Int(count) + 256)
            encode(Write3Args(file: handle(path), offset: offset, count: count, stable: stable, data: data))
            prepared.interpret = { body, outcome in
                let result = try Write3Res(xdr: &body)
                outcome.status = result.status.rawValue
                if case .ok(let ok) = result { outcome.written = Int(ok.count) }
            }
        case .create(let dir, let entryName, let mode, let attributes):
            let how: CreateHow3
            switch mode {
            case .unchecked: how = .unchecked(attributes.setAttributes)
            case .guarded: how = .guarded(attributes.setAttributes)
            case .exclusive: how = .exclusive(CreateVerifier3(rawValue: UInt64.random(in: 1...UInt64.max)))
            }
            encode(Create3Args(where: DirOpArgs3(dir: handle(dir), name: name(entryName)), how: how))
            prepared.interpret = Self.creation(BootPath.join(dir, entryName))
        case .mkdir(let dir, let entryName, let attributes):
            encode(
                MkDir3Args(
                    where: DirOpArgs3(dir: handle(dir), name: name(entryName)), attributes: attributes.setAttributes))
            prepared.interpret = Self.creation(BootPath.join(dir, entryName))
        case .symlink(let dir, let entryName, let target, let attributes):
            encode(
                Symlink3Args(
                    where: DirOpArgs3(dir: handle(dir), name: name(entryName)),
                    symlink: SymlinkData3(symlinkAttributes: attributes.setAttributes, symlinkData: name(target))))
            prepared.interpret = Self.creation(BootPath.join(dir, entryName))
        case .mknod(let dir, let entryName, let type):
            let what: MkNodData3
            switch type {
            case .chr: what = .chr(DeviceData3(devAttributes: .none, spec: SpecData3()))
            case .blk: what = .blk(DeviceData3(devAttributes: .none, spec: SpecData3()))
            case .sock: what = .sock(.none)
            default: what = .fifo(.none)
            }
            encode(MkNod3Args(where: DirOpArgs3(dir: handle(dir), name: name(entryName)), what: what))
            prepared.interpret = Self.creation(BootPath.join(dir, entryName))
        case .remove(let dir, let entryName), .rmdir(let dir, let entryName):
            encode(DirOpArgs3(dir: handle(dir), name: name(entryName)))
            let path = BootPath.join(dir, entryName)
            prepared.interpret = { body, outcome in
                outcome.status = try body.readXDRUInt32()
                outcome.forgotten = path
            }
        case .rename(let dir, let entryName, let toDir, let toName):
            encode(
                Rename3Args(
                    from: DirOpArgs3(dir: handle(dir), name: name(entryName)),
                    to: DirOpArgs3(dir: handle(toDir), name: name(toName))))
            let (from, to) = (BootPath.join(dir, entryName), BootPath.join(toDir, toName))
            prepared.interpret = { body, outcome in
                outcome.status = try body.readXDRUInt32()
                outcome.renamed = (from, to)
            }
        case .link(let path, let dir, let entryName):
            let file = handle(path)
            encode(Link3Args(file: file, link: DirOpArgs3(dir: handle(dir), name: name(entryName))))
            let linked = BootPath.join(dir, entryName)
            prepared.interpret = { body, outcome in
                outcome.status = try body.readXDRUInt32()
                outcome.learned = [(linked, file)]
            }
        case .readdir(let dir, let continued, let count):
            let (cookie, verifier) =
                continued ? state.cookies[dir] ?? (0, CookieVerifier3(rawValue: 0)) : (0, CookieVerifier3(rawValue: 0))
            encode(ReadDir3Args(dir: handle(dir), cookie: cookie, cookieverf: verifier, count: count))
            prepared.interpret = { body, outcome in
                let result = try ReadDir3Res(xdr: &body)
                outcome.status = result.status.rawValue
                if case .ok(let ok) = result, let last = ok.entries.last {
                    outcome.cookie = (dir, last.cookie, ok.cookieverf)
                }
            }
        case .readdirplus(let dir, let continued, let dircount, let maxcount):
            let (cookie, verifier) =
                continued ? state.cookies[dir] ?? (0, CookieVerifier3(rawValue: 0)) : (0, CookieVerifier3(rawValue: 0))
            encode(
                ReadDirPlus3Args(
                    dir: handle(dir), cookie: cookie, cookieverf: verifier, dircount: dircount, maxcount: maxcount))
            prepared.interpret = { body, outcome in
                let result = try ReadDirPlus3Res(xdr: &body)
                outcome.status = result.status.rawValue
                guard case .ok(let ok) = result else { return }
                for entry in ok.entries where entry.name != Array(".".utf8) && entry.name != Array("..".utf8) {
                    if let entryHandle = entry.nameHandle.handle {
                        outcome.learned.append((BootPath.join(dir, BootPath.encode(entry.name)), entryHandle))
                    }
                }
                if let last = ok.entries.last { outcome.cookie = (dir, last.cookie, ok.cookieverf) }
            }
        case .fsstat(let path): encode(FSStat3Args(fsroot: handle(path)))
        case .fsinfo(let path): encode(FSInfo3Args(fsroot: handle(path)))
        case .pathconf(let path): encode(PathConf3Args(object: handle(path)))
        case .commit(let path, let offset, let count):
            encode(Commit3Args(file: handle(path), offset: offset, count: count))
        }
        if let missing {
            prepared.failure =
                "\(call.operation.keyword) \(call.operation.arguments.joined(separator: " ")): no handle for \(missing) (the call that gives it failed or did not return it); not sent"
        }
        return prepared
    }

    static func creation(_ path: String) -> @Sendable (inout ByteBuffer, inout Outcome) throws -> Void {
        { body, outcome in
            let result = try Create3Res(xdr: &body)
            outcome.status = result.status.rawValue
            if case .ok(let ok) = result, let created = ok.obj.handle { outcome.learned = [(path, created)] }
        }
    }

    static func execute(_ p: Prepared, nfs: some BootReplayTransport, mount: some BootReplayTransport) async -> Outcome
    {
        var outcome = Outcome(index: p.index)
        if let failure = p.failure {
            outcome.failure = failure
            return outcome
        }
        let sent = ContinuousClock.now
        do {
            // Each transport called as its own type: choosing one into an `any` boxed it for every call.
            var body =
                p.program == Mount.program
                ? try await mount.call(
                    program: p.program, version: p.version, procedure: p.procedure, arguments: p.arguments)
                : try await nfs.call(
                    program: p.program, version: p.version, procedure: p.procedure, arguments: p.arguments)
            let answered = ContinuousClock.now
            let elapsed = answered - sent
            outcome.span = (sent, answered)
            outcome.latency =
                UInt64(elapsed.components.seconds) * 1_000_000_000
                + UInt64(elapsed.components.attoseconds / 1_000_000_000)
            try p.interpret(&body, &outcome)
        } catch {
            outcome.failure = "\(error)"
        }
        return outcome
    }
}
