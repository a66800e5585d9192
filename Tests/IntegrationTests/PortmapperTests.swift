import Foundation
import TestSupport
import Testing

/// rpcinfo and showmount (independent clients, libtirpc-based) against strata with its builtin
/// portmapper and with a real rpcbind. Port 111 and /run/rpcbind.sock are global, so each test
/// runs in a network and mount namespace of its own (`unshare -n -m`) with loopback up and a
/// private /run: nothing it starts is visible outside, and it stops everything by PID.
@Suite(.serialized) struct PortmapperTests {
    /// Runs `body` (bash) in fresh namespaces after starting strata there with `portmapper`;
    /// `$STRATA_PID` is the server, which the script stops itself.
    func inNamespace(portmapper: String, startRPCBind: Bool, body: String) throws -> CommandResult {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        let config = threeLayerConfig(clients: "\"127.0.0.0/8(rw,insecure)\", \"10.9.0.0/16(ro)\"")
            .replacingOccurrences(of: "portmapper = \"off\"", with: "portmapper = \"\(portmapper)\"")
            .replacingOccurrences(of: "@DIR@", with: directory.path)
        try config.write(toFile: directory.file("strata.toml"), atomically: true, encoding: .utf8)
        let script = """
            set -u
            mount --make-rprivate / 2>/dev/null
            mount -t tmpfs tmpfs /run
            ip link set lo up
            \(startRPCBind ? "mkdir -p /run/rpcbind; rpcbind -f -w & RPCBIND_PID=$!; for i in $(seq 100); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.05; done" : "RPCBIND_PID=")
            "\(strataBinary)" serve --config "\(directory.file("strata.toml"))" --ready-file "\(directory.file("ready"))" > "\(directory.file("log"))" 2>&1 &
            STRATA_PID=$!
            for i in $(seq 300); do [ -s "\(directory.file("ready"))" ] && break; kill -0 $STRATA_PID 2>/dev/null || break; sleep 0.05; done
            cat "\(directory.file("ready"))" 2>/dev/null || { echo "strata did not start:"; cat "\(directory.file("log"))"; }
            \(body)
            kill $STRATA_PID 2>/dev/null; for i in $(seq 200); do kill -0 $STRATA_PID 2>/dev/null || break; sleep 0.05; done; kill -9 $STRATA_PID 2>/dev/null
            \(startRPCBind ? "echo AFTER-STOP; rpcinfo -p 127.0.0.1; kill $RPCBIND_PID; wait $RPCBIND_PID 2>/dev/null" : "")
            echo LOG; cat "\(directory.file("log"))"
            """
        return try run("unshare", ["-n", "-m", "bash", "-c", script], timeout: 120)
    }

    @Test func builtinPortmapperAnswersRpcinfoAndShowmount() throws {
        let result = try self.inNamespace(
            portmapper: "builtin", startRPCBind: false,
            body:
                "echo RPCINFO; rpcinfo -p 127.0.0.1; echo SHOWMOUNT; showmount -e 127.0.0.1; echo PROBE; rpcinfo -t 127.0.0.1 nfs 3; rpcinfo -u 127.0.0.1 mountd 3"
        )
        let output = result.output
        let rpcinfo = section(output, "RPCINFO", "SHOWMOUNT")
        for needle in [
            "100000    2   tcp    111", "100000    2   udp    111", "100003    3   tcp", "100003    3   udp",
            "100005    1   tcp", "100005    3   udp",
        ] {
            #expect(rpcinfo.contains(needle), "rpcinfo -p lacks \"\(needle)\":\n\(output)")
        }
        let showmount = section(output, "SHOWMOUNT", "PROBE")
        #expect(showmount.contains("/union"), "\(output)")
        #expect(showmount.contains("127.0.0.0/8") && showmount.contains("10.9.0.0/16"), "\(output)")
        #expect(output.contains("program 100003 version 3 ready and waiting"), "\(output)")
        #expect(output.contains("program 100005 version 3 ready and waiting"), "\(output)")
    }

    @Test func registersWithASystemRpcbindAndUnregistersOnStop() throws {
        let result = try self.inNamespace(
            portmapper: "system", startRPCBind: true,
            body: "echo RPCINFO; rpcinfo -p 127.0.0.1; echo SHOWMOUNT; showmount -e 127.0.0.1")
        let output = result.output
        let during = section(output, "RPCINFO", "SHOWMOUNT")
        #expect(during.contains("100003    3   tcp") && during.contains("100003    3   udp"), "\(output)")
        #expect(during.contains("100005    3   tcp") && during.contains("100005    1   udp"), "\(output)")
        #expect(section(output, "SHOWMOUNT", "AFTER-STOP").contains("/union"), "\(output)")
        let after = section(output, "AFTER-STOP", "LOG")
        #expect(after.contains("100000"), "rpcbind itself should still be listed:\n\(output)")
        #expect(!after.contains("100003") && !after.contains("100005"), "strata did not unregister:\n\(output)")
    }

    @Test func autoPrefersARunningRpcbind() throws {
        let result = try self.inNamespace(
            portmapper: "auto", startRPCBind: true, body: "echo RPCINFO; rpcinfo -p 127.0.0.1; echo SHOWMOUNT")
        #expect(result.output.contains("portmapper=system"), "\(result.output)")
        #expect(section(result.output, "RPCINFO", "SHOWMOUNT").contains("100003    3   tcp"), "\(result.output)")
    }

    @Test func autoFallsBackToBuiltin() throws {
        let result = try self.inNamespace(
            portmapper: "auto", startRPCBind: false, body: "echo RPCINFO; rpcinfo -p 127.0.0.1; echo END")
        #expect(result.output.contains("portmapper=builtin"), "\(result.output)")
        #expect(section(result.output, "RPCINFO", "END").contains("100005    3   tcp"), "\(result.output)")
    }
}

/// The text between the lines `start` and `end` of `output`.
func section(_ output: String, _ start: String, _ end: String) -> String {
    guard let from = output.range(of: "\(start)\n") else { return "" }
    let rest = output[from.upperBound...]
    guard let to = rest.range(of: "\(end)\n") else { return String(rest) }
    return String(rest[..<to.lowerBound])
}
