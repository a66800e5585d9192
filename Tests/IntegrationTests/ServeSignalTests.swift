import Foundation
import TestSupport
import Testing

/// `strata serve` and its signals: SIGHUP re-reads the configuration and the server goes on; SIGTERM and SIGINT
/// stop it cleanly, each on its own: exit status 0, "strata stopped" logged, the control socket removed.
@Suite struct ServeSignalTests {
    @Test(arguments: [SIGTERM, SIGINT])
    func aHangupReloadsAndAStopSignalStopsCleanly(stopSignal: Int32) throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        let directory = server.directory
        defer { server.stop() }
        let socket = directory.file("state/control.sock")
        #expect(FileManager.default.fileExists(atPath: socket))

        server.signal(SIGHUP)
        try waitFor("the reload", timeout: 10) { server.log.contains("configuration reloaded") }
        server.signal(SIGHUP)
        try waitFor("the second reload", timeout: 10) {
            server.log.components(separatedBy: "configuration reloaded").count - 1 >= 2
        }
        #expect(server.isRunning, "a hangup does not stop the server")

        server.signal(stopSignal)
        try waitFor("the server to exit", timeout: 20) { !server.isRunning }
        #expect(server.stop() == 0, "\(server.log)")
        #expect(server.log.contains("strata stopped"), "\(server.log)")
        #expect(!FileManager.default.fileExists(atPath: socket), "the control socket is removed")
    }
}
