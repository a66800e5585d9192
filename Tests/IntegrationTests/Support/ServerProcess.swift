import Foundation
import TestSupport

/// Errors of the integration harness, each naming what was waited for.
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The package root, found from this file's path (Tests/IntegrationTests/Support/...).
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<4 { url.deleteLastPathComponent() }
    return url.path
}()

/// The strata binary under test: $STRATA_BIN (set by the Makefile) or the debug build.
let strataBinary: String = ProcessInfo.processInfo.environment["STRATA_BIN"] ?? "\(packageRoot)/.build/debug/strata"

/// A `strata serve` child process on loopback, started with a configuration written by the
/// test, on ports it picks itself (port 0), stopped by PID.
final class ServerProcess {
    private var child: Subprocess?
    let directory: TemporaryDirectory
    let configPath: String
    let readyFile: String
    let logFile: String
    let extraArguments: [String]
    private(set) var nfsPort = 0
    private(set) var mountPort = 0
    private(set) var metricsPort: Int?

    /// Starts strata with `config` (TOML text; `@DIR@` is replaced by the scratch directory).
    init(config: String, directory: TemporaryDirectory, extraArguments: [String] = [], timeout: Double = 30) throws {
        self.directory = directory
        self.configPath = directory.file("strata.toml")
        self.readyFile = directory.file("ready")
        self.logFile = directory.file("strata.log")
        self.extraArguments = extraArguments
        try self.writeConfig(config)
        try Data().write(to: URL(fileURLWithPath: self.logFile))
        try self.launch(arguments: extraArguments, timeout: timeout)
    }

    /// Starts strata with `config` over a fresh `makeThreeLayerFixture` (the server keeps the directory).
    convenience init(threeLayers config: String, extraArguments: [String] = [], timeout: Double = 30) throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        try self.init(config: config, directory: directory, extraArguments: extraArguments, timeout: timeout)
    }

    func writeConfig(_ config: String) throws {
        try config.replacingOccurrences(of: "@DIR@", with: self.directory.path)
            .write(toFile: self.configPath, atomically: true, encoding: .utf8)
    }

    private func launch(arguments: [String], timeout: Double) throws {
        try? FileManager.default.removeItem(atPath: self.readyFile)
        self.child = try Subprocess(
            [strataBinary, "serve", "--config", self.configPath, "--ready-file", self.readyFile] + arguments,
            output: .file(self.logFile))
        try self.waitUntilReady(timeout: timeout)
    }

    /// Stops the server and starts it again on the same ports, state and layers.
    func restart(crash: Bool = false) throws {
        if crash { self.crash() } else { self.stop() }
        try self.launch(
            arguments: self.extraArguments + ["--nfs-port", "\(self.nfsPort)", "--mount-port", "\(self.mountPort)"],
            timeout: 30)
    }

    func waitUntilReady(timeout: Double) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: self.readyFile, encoding: .utf8), text.hasSuffix("\n") {
                for field in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                    let parts = field.split(separator: "=")
                    guard parts.count == 2 else { continue }
                    switch parts[0] {
                    case "nfs": self.nfsPort = Int(parts[1]) ?? 0
                    case "mount": self.mountPort = Int(parts[1]) ?? 0
                    case "metrics": self.metricsPort = Int(parts[1])
                    default: break
                    }
                }
                return
            }
            if let child = self.child, !child.isRunning {
                throw HarnessError("strata exited with status \(child.status ?? -1) before serving; log:\n\(self.log)")
            }
            usleep(20_000)
        }
        self.stop()
        throw HarnessError("strata did not become ready within \(timeout) s; log:\n\(self.log)")
    }

    var pid: Int32 { self.child?.pid ?? -1 }

    var isRunning: Bool { self.child?.isRunning ?? false }

    var log: String { (try? String(contentsOfFile: self.logFile, encoding: .utf8)) ?? "" }

    /// The libnfs URL of `export` on this server.
    func url(_ export: String, path: String = "") -> String {
        "nfs://127.0.0.1\(export)\(path)?version=3&nfsport=\(self.nfsPort)&mountport=\(self.mountPort)"
    }

    /// Sends `signal` to the server.
    func signal(_ number: Int32) {
        self.child?.signal(number)
    }

    /// Stops the server with SIGTERM (SIGKILL after 10 s) and waits for it; returns its status.
    @discardableResult
    func stop() -> Int32 {
        self.child?.terminate(grace: 10) ?? -1
    }

    /// Kills the server at once (a crash), without letting it clean up.
    func crash() {
        guard let child = self.child, child.isRunning else { return }
        child.signal(SIGKILL)
        _ = child.wait(timeout: 10)
    }

    /// Open descriptors of the server process, for leak checks.
    var openDescriptorCount: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(self.pid)/fd").count) ?? -1
    }

    deinit {
        self.stop()
    }
}

/// A three-layer export for tests: two lowers with overlapping trees and an upper.
func makeThreeLayerFixture(_ directory: TemporaryDirectory) throws {
    try directory.write("lower2/etc/hostname", "base\n")
    try directory.write("lower2/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    try directory.write("lower2/usr/share/doc/readme", "from lower2\n")
    try directory.write("lower2/shared/only-in-lower2", "2\n")
    try directory.write("lower2/shared/in-both", "lower2 version\n")
    try directory.write("lower1/etc/hostname", "site\n")
    try directory.write("lower1/shared/only-in-lower1", "1\n")
    try directory.write("lower1/shared/in-both", "lower1 version\n")
    try directory.write("lower1/opt/tool/bin/run", "#!/bin/sh\necho run\n", mode: 0o755)
    try directory.mkdir("lower2/tmp")
    chmod(directory.file("lower2/tmp"), 0o1777)
    try directory.mkdir("upper")
}

/// The `[server]` table of a test server: loopback, ports the kernel picks, no portmapper, the state directory in
/// the test's directory; then `extra` lines.
func testServerSection(_ extra: String = "") -> String {
    """
    [server]
    listen = ["127.0.0.1"]
    nfs_port = 0
    mount_port = 0
    portmapper = "off"
    state_dir = "@DIR@/state"
    \(extra)
    """
}

/// The configuration of the three-layer fixture, served to loopback clients.
func threeLayerConfig(
    clients: String = "\"127.0.0.0/8(rw,no_root_squash,insecure)\"", server extra: String = ""
) -> String {
    """
    \(testServerSection("log_level = \"info\"\n" + extra))

    [[export]]
    path = "/union"
    lowers = ["@DIR@/lower1", "@DIR@/lower2"]
    upper = "@DIR@/upper"
    clients = [\(clients)]
    """
}
