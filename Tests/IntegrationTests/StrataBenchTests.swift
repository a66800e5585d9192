import Foundation
import TestSupport
import Testing

/// `strata bench` quick workloads against a test server: checks what was done (every phase
/// reported, the right number of calls, no errors, the data where it belongs), never speed.
@Suite(.serialized) struct StrataBenchTests {
    static func config() -> String {
        """
        \(testServerSection("log_level = \"warning\""))

        [[export]]
        path = "/union"
        lowers = ["@DIR@/lower1", "@DIR@/lower2"]
        upper = "@DIR@/upper"
        clients = ["127.0.0.0/8(rw,no_root_squash,insecure)"]

        [[export]]
        path = "/perclient"
        lowers = ["@DIR@/lower1", "@DIR@/lower2"]
        upper = "@DIR@/clients/{client}"
        clients = ["127.0.0.0/8(rw,no_root_squash,insecure)"]
        """
    }

    /// Runs `strata bench --json` with `arguments`; returns the phases by name.
    static func bench(
        _ server: ServerProcess, _ export: String, _ arguments: [String]
    ) throws -> [String: [String: Any]] {
        let result = try runSplit(
            strataBinary,
            [
                "bench", "--export", export, "--nfs-port", "\(server.nfsPort)", "--mount-port", "\(server.mountPort)",
                "--json",
                "--watch-pid", "\(server.pid)", "--timeout", "30",
            ] + arguments,
            timeout: 120)
        #expect(result.succeeded, "strata bench \(arguments) failed: \(result.stderr)")
        var phases: [String: [String: Any]] = [:]
        for line in result.stdout.split(separator: "\n") {
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
            let phase = try #require(object["phase"] as? String)
            phases[phase] = object
        }
        return phases
    }

    static func int(_ phase: [String: Any]?, _ key: String) -> Int? {
        (phase?[key] as? NSNumber)?.intValue
    }

    @Test func quickWorkloadsDoWhatTheySayAgainstStrata() throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        // A merged tree: 3 directories, 10 files each, split over the two lowers.
        for d in 0..<3 {
            for f in 0..<10 {
                try directory.write("lower\(f % 2 + 1)/tree/d\(d)/f\(f)", "")
            }
        }
        let data = String(repeating: "0123456789abcdef", count: 20_000)  // 320,000 bytes
        try directory.write("lower2/data.dat", data)
        let server = try ServerProcess(config: Self.config(), directory: directory)
        defer { server.stop() }

        var phases = try Self.bench(
            server, "/union",
            [
                "--workload", "getattr,lookup,readdirplus", "--n", "300", "--qd", "8", "-j", "2", "--source",
                "127.0.0.71-127.0.0.72",
                "--path", "tree", "--passes", "2",
            ])
        for name in ["getattr", "lookup", "readdirplus-first", "readdirplus-warm"] {
            #expect(phases[name] != nil, "phase \(name) missing")
            #expect(Self.int(phases[name], "errors") == 0, "\(name) had errors: \(phases[name] ?? [:])")
        }
        #expect(Self.int(phases["getattr"], "ops") == 300)
        #expect(Self.int(phases["lookup"], "ops") == 300)
        #expect(Self.int(phases["getattr"], "conns") == 2)
        // Two clients list the 3 directories and 30 files each.
        #expect(Self.int(phases["readdirplus-first"], "units") == 2 * 33)
        #expect(Self.int(phases["readdirplus-warm"], "units") == 2 * 33)
        #expect(phases["getattr"]?["server_us_per_op"] != nil, "--watch-pid reports the server's CPU")

        phases = try Self.bench(
            server, "/union",
            [
                "--workload", "create,mkdir-tree", "--n", "50", "--qd", "4", "--dir", "made", "--dirs", "3", "--files",
                "4",
            ])
        #expect(Self.int(phases["create"], "ops") == 50)
        #expect(Self.int(phases["remove"], "ops") == 50)
        #expect(Self.int(phases["create"], "errors") == 0)
        #expect(Self.int(phases["remove"], "errors") == 0)
        #expect(Self.int(phases["mkdir-tree"], "ops") == 3 + 3 * 4)
        #expect(Self.int(phases["mkdir-tree"], "errors") == 0)
        let made = try FileManager.default.contentsOfDirectory(atPath: directory.file("upper/tree/made")).sorted()
        #expect(made == ["d0000", "d0001", "d0002"], "create removed its files; mkdir-tree left its tree")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.file("upper/tree/made/d0001")).count == 4)

        // A second create into the same directory is refused with a clear message.
        let again = try runSplit(
            strataBinary,
            [
                "bench", "--export", "/union", "--nfs-port", "\(server.nfsPort)", "--mount-port", "\(server.mountPort)",
                "--workload", "mkdir-tree", "--dir", "made",
            ], timeout: 60)
        #expect(!again.succeeded)
        #expect(again.stderr.contains("made already exists"), "stderr: \(again.stderr)")

        phases = try Self.bench(
            server, "/union",
            [
                "--workload", "read,write,write-sync", "--path", "data.dat", "--size", "100000", "--bs", "32K", "--qd",
                "4",
            ])
        #expect(Self.int(phases["read"], "units") == 100_000)
        #expect(Self.int(phases["read"], "ops") == 4)
        #expect(Self.int(phases["write"], "units") == 100_000)
        #expect(Self.int(phases["write"], "ops") == 4 + 1, "four WRITEs and the COMMIT")
        #expect(phases["write"]?["file"] as? String == "existing")
        #expect(phases["write"]?["commit_us"] != nil)
        #expect(Self.int(phases["write-sync"], "ops") == 4)
        for name in ["read", "write", "write-sync"] {
            #expect(Self.int(phases[name], "errors") == 0, "\(name): \(phases[name] ?? [:])")
        }
        // The first write copied the lower file up; the writes replaced its first 100,000 bytes.
        let upper = try #require(FileManager.default.contents(atPath: directory.file("upper/tree/data.dat")))
        #expect(upper.count == data.utf8.count)
        #expect(upper.suffix(from: 100_000) == Data(data.utf8).suffix(from: 100_000))
        #expect(upper.prefix(100_000) != Data(data.utf8).prefix(100_000))
        #expect(directory.read("lower2/data.dat") == data, "the lower is untouched")
    }

    @Test func connectionsFromTwoAddressesGetTheirOwnUppers() throws {
        let server = try ServerProcess(threeLayers: Self.config())
        let directory = server.directory
        defer { server.stop() }
        let phases = try Self.bench(
            server, "/perclient",
            [
                "--workload", "mkdir-tree", "--dir", "mine", "--dirs", "4", "--files", "2", "--qd", "4", "-j", "2",
                "--source", "127.0.0.81", "--source", "127.0.0.82",
            ])
        #expect(Self.int(phases["mkdir-tree"], "errors") == 0)
        #expect(Self.int(phases["mkdir-tree"], "ops") == 4 + 4 * 2)
        // Connection k makes directories k, k+2: each in its own client's upper.
        let first = try FileManager.default.contentsOfDirectory(atPath: directory.file("clients/127.0.0.81/tree/mine"))
            .sorted()
        let second = try FileManager.default.contentsOfDirectory(atPath: directory.file("clients/127.0.0.82/tree/mine"))
            .sorted()
        #expect(first == ["d0000", "d0002"])
        #expect(second == ["d0001", "d0003"])
    }

    @Test func badArgumentsAreRefusedWithTheOptionNamed() throws {
        let unknown = try runSplit(strataBinary, ["bench", "--export", "/x", "--workload", "getattr,fly"], timeout: 30)
        #expect(!unknown.succeeded)
        #expect(unknown.stderr.contains("unknown workload 'fly'"))
        let range = try runSplit(
            strataBinary, ["bench", "--export", "/x", "--workload", "getattr", "--source", "127.0.0.9-127.0.0.2"],
            timeout: 30)
        #expect(!range.succeeded)
        #expect(range.stderr.contains("--source"))
        let refused = try runSplit(
            strataBinary, ["bench", "--export", "/x", "--workload", "getattr", "--nfs-port", "1", "--mount-port", "1"],
            timeout: 30)
        #expect(!refused.succeeded)
        #expect(refused.stderr.contains("connection 1"), "stderr: \(refused.stderr)")
    }
}
