import Foundation
import TestSupport
import Testing

/// The control socket: one JSON request a line, bounded; a client that sends an endless line is
/// cut off, and the server goes on answering others.
@Suite(.serialized) struct ControlSocketTests {
    /// Connects to the unix socket at `path`, sends `bytes`, and returns what comes back up to
    /// a newline, and whether the server closed the connection (waiting at most 10 s).
    func exchange(path: String, _ bytes: [UInt8]) throws -> (reply: [UInt8], closed: Bool) {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw HarnessError("socket: \(errno)") }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { throw HarnessError("connect \(path): \(errno)") }
        var limit = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent <= 0 { break }  // the server closed the connection while we were sending
            offset += sent
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !received.contains(UInt8(ascii: "\n")) {
            let count = read(descriptor, &chunk, chunk.count)
            // EOF, or a reset: the server closed with our bytes unread.
            if count == 0 || (count < 0 && errno == ECONNRESET) { return (received, true) }
            if count < 0 { break }
            received += chunk[0..<count]
        }
        return (received, false)
    }

    @Test func anEndlessLineIsCutOffAndOthersAreStillAnswered() throws {
        let server = try ServerProcess(threeLayers: threeLayerConfig())
        let directory = server.directory
        defer { server.stop() }
        let path = directory.file("state/control.sock")
        let endless = try self.exchange(path: path, [UInt8](repeating: UInt8(ascii: "x"), count: 200 << 10))
        #expect(endless.closed && endless.reply.isEmpty, "the connection is closed, with no answer")
        let good = try self.exchange(path: path, Array("{\"command\":\"exports\"}\n".utf8))
        #expect(
            String(decoding: good.reply, as: UTF8.self).contains("\"ok\":true"),
            "\(String(decoding: good.reply, as: UTF8.self))")
        #expect(server.isRunning)
    }
}
