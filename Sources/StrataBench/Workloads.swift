import Basics
import NFS3
import NFS3Client
import NIOCore
import XDR

/// The workloads of `strata bench`. Each prepares its objects (untimed), then runs one or
/// more timed phases and reports each.
enum Workload: String, CaseIterable, Sendable {
    case getattr
    case lookup
    case readdirplus
    case create
    case mkdirTree = "mkdir-tree"
    case read
    case write
    case writeSync = "write-sync"

    var summary: String {
        switch self {
        case .getattr: return "--n GETATTRs of --path (default the export root)"
        case .lookup: return "lists directory --path, then --n LOOKUPs cycling over its names"
        case .readdirplus:
            return
                "lists the tree under --path with READDIRPLUS --passes times: phases readdirplus-first, readdirplus-warm (entries/s)"
        case .create:
            return
                "MKDIR --dir (default bench-create.PID), --n CREATE GUARDED, then the REMOVEs (phases create, remove)"
        case .mkdirTree:
            return "MKDIR --dir (default bench-tree.PID), --dirs MKDIRs, --files CREATEs in each (one phase)"
        case .read: return "sequential READs of --path in --bs, the whole file or --size (MiB/s)"
        case .write:
            return "--size bytes to --path in --bs UNSTABLE WRITEs, then COMMIT (timed); the file is created if missing"
        case .writeSync: return "as write, with FILE_SYNC WRITEs and no COMMIT"
        }
    }
}

/// What the workloads need from the command line.
struct WorkloadSettings: Sendable {
    /// `--n`: how many calls (or objects) a phase makes, shared among the workers.
    var count: Int
    var path: String?
    /// The fresh directory of create and mkdir-tree.
    var directory: String?
    var size: UInt64?
    var blockSize: Int
    var dirs: Int
    var files: Int
    var passes: Int
    var dircount: UInt32
    var maxcount: UInt32
    var keep: Bool
    var tag: String
}

struct WorkloadRunner {
    let workers: [Worker]
    let settings: WorkloadSettings
    let serverPID: Int32?
    let report: (PhaseReport) -> Void

    var totalQueueDepth: Int { self.workers.reduce(0) { $0 + $1.queueDepth } }

    /// Runs `body` on every worker's loop at once and times it as one phase.
    func phase(
        _ workload: Workload, _ name: String, unit: String, expected: Int, unitScale: Double = 1,
        extra: [(String, String)] = [],
        extraAfter: @Sendable () -> [(String, String)] = { [] },
        _ body: @escaping @Sendable (Worker) -> EventLoopFuture<Void>
    ) async throws -> PhaseReport {
        for worker in self.workers {
            try await worker.eventLoop.submit { worker.resetCounters(expected: worker.share(of: expected)) }.get()
        }
        let start = CPUSample.take(serverPID: self.serverPID)
        let futures = self.workers.map { worker in worker.eventLoop.flatSubmit { body(worker) } }
        for future in futures { try await future.get() }
        var latencies: [UInt64] = []
        var units = 0.0
        var errors = 0
        var firstError: String?
        // Read back on each loop (the fields are confined there).
        for worker in self.workers {
            let (l, u, e, f) = try await worker.eventLoop.submit {
                (worker.latencies, worker.units, worker.errors, worker.firstError)
            }.get()
            latencies += l
            units += u
            errors += e
            if firstError == nil { firstError = f }
        }
        var report = PhaseReport.make(
            workload: workload.rawValue, phase: name, unit: unit, start: start, latencies: latencies, units: units,
            errors: errors, firstError: firstError, qd: self.totalQueueDepth, connections: self.workers.count)
        report.unitScale = unitScale
        report.extra = extra + extraAfter()
        self.report(report)
        return report
    }

    func run(_ workload: Workload) async throws {
        switch workload {
        case .getattr: try await self.getattr()
        case .lookup: try await self.lookup()
        case .readdirplus: try await self.readdirplus()
        case .create: try await self.create()
        case .mkdirTree: try await self.mkdirTree()
        case .read: try await self.read()
        case .write: try await self.write(stable: .unstable)
        case .writeSync: try await self.write(stable: .fileSync)
        }
    }

    /// Resolves `path` (relative to the export root) for every worker, as that client.
    private func resolveTargets(_ path: String?) async throws {
        for worker in self.workers {
            worker.target = try await worker.client.resolve(path ?? "", from: worker.root)
        }
    }

    private func getattr() async throws {
        try await self.resolveTargets(self.settings.path)
        let calls = self.settings.count
        _ = try await self.phase(.getattr, "getattr", unit: "ops/s", expected: calls) { worker in
            let args = GetAttr3Args(object: worker.target)
            return worker.run(count: worker.share(of: calls)) { worker, _ in
                worker.client.call(.getattr, args) { reply in
                    _ = try GetAttr3Res(xdr: &reply).ok(.getattr); return 1
                }
            }
        }
    }

    private func lookup() async throws {
        try await self.resolveTargets(self.settings.path)
        for worker in self.workers {
            let entries = try await worker.client.listDirectory(worker.target)
            worker.names = entries.prefix(10_000).map(\.name)
            guard !worker.names.isEmpty else {
                throw BenchError(
                    "lookup: directory \(self.settings.path ?? "/") is empty; give --path a directory with entries")
            }
        }
        let calls = self.settings.count
        _ = try await self.phase(.lookup, "lookup", unit: "ops/s", expected: calls) { worker in
            worker.run(count: worker.share(of: calls)) { worker, local in
                let name = worker.names[worker.globalIndex(local) % worker.names.count]
                return worker.client.call(.lookup, Lookup3Args(what: DirOpArgs3(dir: worker.target, name: name))) {
                    reply in
                    _ = try Lookup3Res(xdr: &reply).ok(.lookup)
                    return 1
                }
            }
        }
    }

    private func readdirplus() async throws {
        try await self.resolveTargets(self.settings.path)
        let dircount = self.settings.dircount
        let maxcount = self.settings.maxcount
        let walk: @Sendable (Worker) -> EventLoopFuture<Void> = { worker in
            worker.walk(top: worker.target, dircount: dircount, maxcount: maxcount)
        }
        _ = try await self.phase(.readdirplus, "readdirplus-first", unit: "entries/s", expected: 1024, walk)
        if self.settings.passes > 1 {
            let passes = self.settings.passes - 1
            _ = try await self.phase(.readdirplus, "readdirplus-warm", unit: "entries/s", expected: 1024) { worker in
                var chain = worker.eventLoop.makeSucceededVoidFuture()
                for _ in 0..<passes { chain = chain.flatMap { walk(worker) } }
                return chain
            }
        }
    }

    /// MKDIR `path` as each worker's target. It must be new: the first connection's EXIST is
    /// an error; a later connection that finds it (same namespace) uses it, one that does not
    /// (its own upper) makes its own.
    private func makeFreshDirectoryForEveryWorker(_ path: String) async throws {
        for worker in self.workers {
            let (parent, name) = try await Self.parentAndName(path, as: worker)
            if worker.index > 0, let existing = try? await worker.client.lookup(name, in: parent).object {
                worker.target = existing
                continue
            }
            do {
                worker.target = try await worker.client.mkdir(name, in: parent)
            } catch NFS3ClientError.nfs(.exist, _) {
                throw BenchError("\(path) already exists in the export; give --dir a new name")
            }
        }
    }

    private func removeDirectory(_ path: String, from worker: Worker) async throws {
        let (parent, name) = try await Self.parentAndName(path, as: worker)
        try await worker.client.rmdir(name, in: parent)
    }

    /// The directory that holds `path` (its components before the last, looked up from the export root as `worker`
    /// sees it) and the last component.
    private static func parentAndName(_ path: String, as worker: Worker) async throws -> (FileHandle3, String) {
        var parent = worker.root
        let components = path.split(separator: "/").map(String.init)
        for component in components.dropLast() { parent = try await worker.client.lookup(component, in: parent).object }
        return (parent, components.last ?? path)
    }

    private func create() async throws {
        let path = self.settings.directory ?? "bench-create.\(self.settings.tag)"
        try await self.makeFreshDirectoryForEveryWorker(path)
        let objects = self.settings.count
        let attributes = SetAttributes3(mode: 0o644)
        _ = try await self.phase(.create, "create", unit: "ops/s", expected: objects) { worker in
            worker.run(count: worker.share(of: objects)) { worker, local in
                let name = fileName(worker.globalIndex(local))
                return worker.client.call(
                    .create, Create3Args(where: DirOpArgs3(dir: worker.target, name: name), how: .guarded(attributes))
                ) { reply in
                    _ = try Create3Res(xdr: &reply).ok(.create)
                    return 1
                }
            }
        }
        _ = try await self.phase(.create, "remove", unit: "ops/s", expected: objects) { worker in
            worker.run(count: worker.share(of: objects)) { worker, local in
                let name = fileName(worker.globalIndex(local))
                return worker.client.call(.remove, Remove3Args(object: DirOpArgs3(dir: worker.target, name: name))) {
                    reply in
                    _ = try Remove3Res(xdr: &reply).ok(.remove)
                    return 1
                }
            }
        }
        if !self.settings.keep {
            for worker in self.workers {
                do { try await self.removeDirectory(path, from: worker) } catch NFS3ClientError.nfs(.noent, _) {}
            }
        }
    }

    private func mkdirTree() async throws {
        let path = self.settings.directory ?? "bench-tree.\(self.settings.tag)"
        try await self.makeFreshDirectoryForEveryWorker(path)
        let dirs = self.settings.dirs
        let files = self.settings.files
        let dirAttributes = SetAttributes3(mode: 0o755)
        let fileAttributes = SetAttributes3(mode: 0o644)
        _ = try await self.phase(.mkdirTree, "mkdir-tree", unit: "ops/s", expected: dirs + dirs * files) { worker in
            // This worker's directories (every connections-th), then their files, consecutive
            // CREATEs going to different directories.
            let myDirs = worker.share(of: dirs)
            worker.directories = []
            worker.directories.reserveCapacity(myDirs)
            return worker.run(count: myDirs) { worker, local in
                let name = Array(String(format: "d%04d", worker.globalIndex(local)).utf8)
                return worker.client.call(
                    .mkdir, MkDir3Args(where: DirOpArgs3(dir: worker.target, name: name), attributes: dirAttributes)
                ) { reply in
                    let ok = try MkDir3Res(xdr: &reply).ok(.mkdir)
                    guard let handle = ok.obj.handle else {
                        throw BenchError("MKDIR: the server returned no handle")
                    }
                    worker.directories.append(handle)
                    return 1
                }
            }.flatMap {
                let made = worker.directories.count
                return worker.run(count: made * files) { worker, local in
                    let dir = worker.directories[local % made]
                    let name = Array(String(format: "f%05d", local / made).utf8)
                    return worker.client.call(
                        .create, Create3Args(where: DirOpArgs3(dir: dir, name: name), how: .guarded(fileAttributes))
                    ) { reply in
                        _ = try Create3Res(xdr: &reply).ok(.create)
                        return 1
                    }
                }
            }
        }
    }

    private func read() async throws {
        guard let path = self.settings.path else { throw BenchError("read: give the file with --path") }
        try await self.resolveTargets(path)
        var chosenBlockSize = self.settings.blockSize
        for worker in self.workers {
            let attributes = try await worker.client.getattr(worker.target)
            worker.targetSize = self.settings.size.map { min($0, attributes.size) } ?? attributes.size
            let info = try await worker.client.fsinfo(worker.root)
            if info.rtmax > 0 { chosenBlockSize = min(chosenBlockSize, Int(info.rtmax)) }
        }
        let size = self.workers[0].targetSize
        let blockSize = chosenBlockSize
        let blocks = Int((size + UInt64(blockSize) - 1) / UInt64(blockSize))
        let count = UInt32(blockSize)
        _ = try await self.phase(
            .read, "read", unit: "MiB/s", expected: blocks, unitScale: 1.0 / 1_048_576,
            extra: [("bytes", "\(size)"), ("bs", "\(blockSize)")]
        ) { worker in
            worker.run(count: worker.share(of: blocks)) { worker, local in
                let offset = UInt64(worker.globalIndex(local)) * UInt64(count)
                let length = UInt32(min(UInt64(count), size - offset))
                return worker.client.call(.read, Read3Args(file: worker.target, offset: offset, count: length)) {
                    reply in
                    Double(try Read3Res(xdr: &reply).ok(.read).count)
                }
            }
        }
    }

    private func write(stable: StableHow3) async throws {
        let path = self.settings.path ?? "bench-write.\(self.settings.tag).dat"
        guard let size = self.settings.size else { throw BenchError("write: give the amount with --size") }
        var chosenBlockSize = self.settings.blockSize
        var existed = true
        for worker in self.workers {
            let (parent, name) = try await Self.parentAndName(path, as: worker)
            // LOOKUP first (untimed), as a client opening the file does: an existing file is
            // overwritten in place, which on a union is the copy-up.
            do {
                worker.target = try await worker.client.lookup(name, in: parent).object
            } catch NFS3ClientError.nfs(.noent, _) {
                existed = false
                worker.target = try await worker.client.create(
                    name, in: parent, how: .unchecked(SetAttributes3(mode: 0o644)))
            }
            let info = try await worker.client.fsinfo(worker.root)
            if info.wtmax > 0 { chosenBlockSize = min(chosenBlockSize, Int(info.wtmax)) }
        }
        let blockSize = chosenBlockSize
        let payload = patternBuffer(blockSize)
        let blocks = Int((size + UInt64(blockSize) - 1) / UInt64(blockSize))
        let commitTime = CommitClock()
        _ = try await self.phase(
            stable == .unstable ? .write : .writeSync, stable == .unstable ? "write" : "write-sync", unit: "MiB/s",
            expected: blocks + 1, unitScale: 1.0 / 1_048_576,
            extra: [("bytes", "\(size)"), ("bs", "\(blockSize)"), ("file", existed ? "existing" : "new")],
            extraAfter: { commitTime.longest.map { [("commit_us", String(format: "%.1f", Double($0) / 1000))] } ?? [] }
        ) { worker in
            worker.run(count: worker.share(of: blocks)) { worker, local in
                let offset = UInt64(worker.globalIndex(local)) * UInt64(blockSize)
                let length = Int(min(UInt64(blockSize), size - offset))
                return worker.client.writeCall(
                    worker.target, offset: offset, data: payload.getSlice(at: payload.readerIndex, length: length)!,
                    stable: stable
                ).flatMapThrowing { result in
                    let ok = try result.ok(.write)
                    guard ok.count == UInt32(length) else {
                        throw BenchError("WRITE: short write \(ok.count) of \(length)")
                    }
                    return Double(length)
                }
            }.flatMap {
                guard stable == .unstable else { return worker.eventLoop.makeSucceededVoidFuture() }
                let start = monotonicNanoseconds()
                return worker.run(count: 1) { worker, _ in
                    worker.client.call(.commit, Commit3Args(file: worker.target, offset: 0, count: 0)) { reply in
                        _ = try Commit3Res(xdr: &reply).ok(.commit)
                        return 0
                    }
                }.map { commitTime.record(monotonicNanoseconds() - start) }
            }
        }
    }
}

/// The longest COMMIT of a phase (set from several loops).
final class CommitClock: Sendable {
    private let value = Locked<UInt64?>(nil)
    func record(_ nanoseconds: UInt64) { self.value.withLock { $0 = max($0 ?? 0, nanoseconds) } }
    var longest: UInt64? { self.value.withLock { $0 } }
}

func fileName(_ index: Int) -> [UInt8] { Array(String(format: "f%07d", index).utf8) }

/// `count` bytes of a fixed pattern (the same for every block, so data can be checked).
func patternBuffer(_ count: Int) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: count)
    var state: UInt32 = 0x9E37_79B9
    for _ in 0..<(count / 4) {
        state = state &* 1_664_525 &+ 1_013_904_223
        buffer.writeInteger(state)
    }
    buffer.writeRepeatingByte(0x5a, count: count - buffer.readableBytes)
    return buffer
}
