import Foundation
import Testing

/// `strata check-config` on the shipped examples and on broken files: errors name the key,
/// the value and the fix.
@Suite struct CheckConfigTests {
    @Test func demoConfigurationIsValid() throws {
        let result = try run(strataBinary, ["check-config", "\(packageRoot)/Config/strata.toml"])
        #expect(result.succeeded, "\(result.output)")
        #expect(result.output.contains("OK"))
    }

    @Test(arguments: ["diskless.toml", "readonly-mirror.toml"])
    func exampleConfigurationsAreValid(name: String) throws {
        // Their layer directories (/srv/...) do not exist here: check everything but the disk.
        let result = try run(strataBinary, ["check-config", "--skip-paths", "\(packageRoot)/Config/\(name)"])
        #expect(result.succeeded, "\(result.output)")
    }

    @Test func dockerConfigurationIsValid() throws {
        let result = try run(strataBinary, ["check-config", "--skip-paths", "\(packageRoot)/Docker/strata.toml"])
        #expect(result.succeeded, "\(result.output)")
    }

    @Test(arguments: [
        ("[server]\nportmapper = \"sometimes\"\n", "server.portmapper"),
        ("[server]\nnfs_port = 70000\n", "server.nfs_port"),
        ("[[export]]\npath = \"relative\"\nlowers = [\"/\"]\nclients = [\"*\"]\n", "export[0].path"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nclients = [\"10.0.0.0/33(rw)\"]\n", "export[0].clients"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nclients = [\"*(rw,fast)\"]\n", "export[0].clients"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nclients = []\n", "export[0].clients"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nupper = \"/u/{host}\"\nclients = [\"*\"]\n", "export[0].upper"),
        ("[[export]]\npath = \"/x\"\nlowers = [\"/\"]\nclients = [\"*\"]\nclient_key = \"mac\"\n", "export[0].client_key"),
        ("[server]\nlisten = [\"localhost\"]\n", "server.listen"),
        ("[sever]\n", "sever"),
        ("[server\n", "(syntax)"),
    ])
    func invalidConfigurationNamesTheKey(toml: String, key: String) throws {
        let directory = try TemporaryDirectory()
        try directory.write("bad.toml", toml)
        let result = try run(strataBinary, ["check-config", directory.file("bad.toml")])
        #expect(!result.succeeded)
        #expect(result.output.contains(key), "expected the message to name \(key): \(result.output)")
    }

    @Test func missingLowerIsNamed() throws {
        let directory = try TemporaryDirectory()
        try directory.write("c.toml", "[[export]]\npath = \"/x\"\nlowers = [\"\(directory.path)/nope\"]\nclients = [\"*\"]\n")
        let result = try run(strataBinary, ["check-config", directory.file("c.toml")])
        #expect(!result.succeeded)
        #expect(result.output.contains("export[0].lowers") && result.output.contains("/nope"), "\(result.output)")
    }
}

/// Start-up failures say which port and which setting to change.
@Suite struct StartupTests {
    @Test(arguments: ["nfs_port", "mount_port"])
    func aTakenPortIsNamedWithItsKey(key: String) throws {
        let directory = try TemporaryDirectory()
        try makeThreeLayerFixture(directory)
        // Hold a TCP port, then ask strata to serve on it.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(holder, pointer, length) == 0 && listen(holder, 1) == 0 && getsockname(holder, pointer, &length) == 0
            }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let config = threeLayerConfig()
            .replacingOccurrences(of: "\(key) = 0", with: "\(key) = \(port)")
            .replacingOccurrences(of: "@DIR@", with: directory.path)
        try config.write(toFile: directory.file("strata.toml"), atomically: true, encoding: .utf8)
        let result = try run(strataBinary, ["serve", "--config", directory.file("strata.toml")], timeout: 30)
        #expect(!result.succeeded)
        #expect(result.output.contains("\(port)") && result.output.contains(key), "\(result.output)")
    }
}
