import ArgumentParser
import BootTrace
import Foundation
import NIOPosix
import StrataBench

/// `strata bench`: the project's load generator (any NFSv3 server). `run` (the default: the
/// per-procedure workloads) and `boot` (the boot storm).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure an NFSv3 server (Strata or any other) with the project's own client.",
        discussion: "`strata bench --workload ...` is `strata bench run --workload ...`.",
        subcommands: [BenchWorkloads.self, BenchBoot.self],
        defaultSubcommand: BenchWorkloads.self)
}

struct BenchBoot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "A boot storm: a recorded diskless boot replayed by N clients at once (Docs/BOOT-TRACE.md).",
        discussion: """
            Each client connects from its own source address (--source, then the next addresses), \
            mounts the export (with per-client uppers each gets its own upper on this first MNT) \
            and replays the boot script with the concurrency the recorded client showed. The \
            script must have been recorded on the image the server exports. Example: \
            strata bench boot --clients 50 --trace Bench/boot-trace.script --nfs-port 2049 \
            --mount-port 20048 --export /diskless --watch-pid $(pidof strata)
            """)

    @Option(name: .long, help: "Number of clients (repeatable or comma-separated: one storm each, in order).")
    var clients: [String] = ["10"]

    @Option(name: .long, help: "The boot script (strata trace convert).")
    var trace: String = "Bench/boot-trace.script"

    @Option(name: .long, help: "Server address.")
    var host: String = "127.0.0.1"

    @Option(name: .customLong("nfs-port"), help: "NFS port.")
    var nfsPort: Int = 2049

    @Option(name: .customLong("mount-port"), help: "MOUNT port.")
    var mountPort: Int = 20048

    @Option(
        name: .long,
        help: "The export each client mounts; {n} is replaced by the client's number from 1 (one export per client).")
    var export: String = "/diskless"

    @Option(name: .long, help: "The first client's source address; client n uses the (n-1)-th address after it.")
    var source: String = "127.1.0.1"

    @Option(name: .customLong("watch-pid"), help: "The server's pid: its CPU and resident memory are reported.")
    var watchPid: Int32?

    @Option(name: .long, help: "Event loop threads of the load generator.")
    var threads: Int = 1

    @Flag(
        name: .long,
        help:
            "Every client mounts once before the storm, outside its clock: per-client uppers exist when the room powers on."
    )
    var premount = false

    @Flag(
        name: .customLong("reads-only"),
        help:
            "Replay only the calls that change nothing, and none on what the boot created: a client whose writable directories are local (for a read-only export)."
    )
    var readsOnly = false

    @Flag(name: .long, help: "One JSON object per storm instead of a text line.")
    var json = false

    func run() async throws {
        var script = try readBootScript(self.trace, unreadable: "cannot read the boot script --trace \(self.trace)")
        if self.readsOnly { script = script.readOnlyPart() }
        let counts = self.clients.flatMap { $0.split(separator: ",") }.map { Int($0) }
        guard counts.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw RuntimeError("--clients takes positive numbers, got \(self.clients.joined(separator: ","))")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, self.threads))
        do {
            try await self.storms(counts.compactMap { $0 }, script: script, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
    }

    func storms(_ counts: [Int], script: BootScript, group: MultiThreadedEventLoopGroup) async throws {
        if counts.count > 1 && self.export.contains("{n}") {
            throw RuntimeError(
                "with one export per client ({n} in --export) run one storm per server start: give one --clients")
        }
        var used = 0
        for count in counts {
            // A later storm comes from new addresses: new clients, with new uppers.
            guard let source = BootStormBench.sourceAddress(self.source, plus: used) else {
                throw RuntimeError("--source \(self.source) is not an IPv4 address")
            }
            used += count
            var bench = BootStormBench(
                host: self.host, nfsPort: self.nfsPort, mountPort: self.mountPort, export: self.export,
                firstSource: source,
                clients: count, serverPID: self.watchPid)
            bench.premount = self.premount
            let result: BootStormBench.Result
            do {
                result = try await bench.run(script: script, group: group)
            } catch {
                throw RuntimeError("\(error)")
            }
            if self.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(result), as: UTF8.self))
            } else {
                print(result.line)
                for error in result.storm.firstErrors { print("  error: \(error)") }
            }
        }
    }
}
