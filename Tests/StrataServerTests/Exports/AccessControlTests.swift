import Foundation
import NIOCore
import SunRPC
import Testing
import Union

@testable import StrataServer

@Suite struct IPAddressTests {
    @Test(arguments: [
        ("10.0.0.1", "10.0.0.1"), ("::1", "::1"), ("::ffff:10.1.2.3", "10.1.2.3"), ("fd00::5", "fd00::5"),
    ])
    func parsesAndPrints(text: String, printed: String) throws {
        let address = try #require(IPAddress(text))
        #expect("\(address)" == printed)
    }

    @Test(arguments: ["", "10.0.0", "10.0.0.256", "host.example", "1::2::3"])
    func rejectsNonAddresses(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func prefixes() throws {
        let network = try #require(IPAddress("10.1.0.0"))
        #expect(try #require(IPAddress("10.1.255.3")).sharesPrefix(with: network, length: 16))
        #expect(!(try #require(IPAddress("10.2.0.1")).sharesPrefix(with: network, length: 16)))
        let v6 = try #require(IPAddress("fd00:10::"))
        #expect(try #require(IPAddress("fd00:10::abcd")).sharesPrefix(with: v6, length: 64))
        #expect(!(try #require(IPAddress("fd00:11::1")).sharesPrefix(with: v6, length: 64)))
        #expect(!(try #require(IPAddress("10.1.0.1")).sharesPrefix(with: v6, length: 0)), "families never match")
    }
}

@Suite struct ClientRuleTests {
    @Test func defaultsAreThoseOfExports5() throws {
        let rule = try ClientRule(parsing: "10.0.0.0/24", key: "k")
        #expect(rule.options.isReadOnly && rule.options.squashesRoot && rule.options.requiresPrivilegedPort)
        #expect(rule.options.anonymousUID == 65534 && rule.options.anonymousGID == 65534)
    }

    @Test func parsesOptions() throws {
        let rule = try ClientRule(
            parsing: " fd00::/64(rw, no_root_squash,insecure,anonuid=1000,anongid=100) ", key: "k")
        #expect(rule.match == .network(try #require(IPAddress("fd00::")), prefixLength: 64))
        #expect(!rule.options.isReadOnly && !rule.options.squashesRoot && !rule.options.requiresPrivilegedPort)
        #expect(rule.options.anonymousUID == 1000 && rule.options.anonymousGID == 100)
    }

    @Test(arguments: ["10.0.0.0/33", "10.0.0.0/x", "*(rw", "*(bogus)", "*(anonuid=-1)", "somehost(rw)", ""])
    func rejectsBadEntries(text: String) {
        #expect(throws: ConfigError.self) { try ClientRule(parsing: text, key: "export[0].clients") }
    }

    @Test func mostSpecificMatchWins() throws {
        let rules = try ["*(ro)", "10.0.0.0/8(rw)", "10.1.0.0/16(rw,no_root_squash)", "10.1.2.3(ro,all_squash)"].map {
            try ClientRule(parsing: $0, key: "k")
        }
        #expect(rules.bestMatch(for: try #require(IPAddress("10.1.2.3")))?.options.squashesAll == true)
        #expect(rules.bestMatch(for: try #require(IPAddress("10.1.9.9")))?.options.squashesRoot == false)
        #expect(rules.bestMatch(for: try #require(IPAddress("10.9.9.9")))?.options.isReadOnly == false)
        #expect(rules.bestMatch(for: try #require(IPAddress("192.0.2.1")))?.match == .everyone)
        let noStar = Array(rules.dropFirst())
        #expect(noStar.bestMatch(for: try #require(IPAddress("192.0.2.1"))) == nil)
    }
}

@Suite struct SquashingTests {
    func sys(uid: UInt32, gid: UInt32, groups: [UInt32] = []) -> RPCCredential {
        .sys(AuthSysParameters(stamp: 0, machineName: "m", uid: uid, gid: gid, groups: groups))
    }

    @Test func rootSquashMapsRootAndGroupZero() throws {
        var options = ClientOptions()
        options.anonymousUID = 99
        options.anonymousGID = 98
        let squashed = try #require(ExportRegistry.squash(self.sys(uid: 0, gid: 0, groups: [0, 5]), options: options))
        #expect(squashed == Credentials(uid: 99, gid: 98, groups: [98, 5]))
        let user = try #require(ExportRegistry.squash(self.sys(uid: 1000, gid: 100), options: options))
        #expect(user == Credentials(uid: 1000, gid: 100, groups: []))
    }

    @Test func noRootSquashKeepsRoot() throws {
        var options = ClientOptions()
        options.squashesRoot = false
        #expect(
            ExportRegistry.squash(self.sys(uid: 0, gid: 0), options: options) == Credentials(uid: 0, gid: 0, groups: [])
        )
    }

    @Test func allSquashMapsEveryone() throws {
        var options = ClientOptions()
        options.squashesAll = true
        #expect(
            ExportRegistry.squash(self.sys(uid: 1000, gid: 100, groups: [7]), options: options)
                == Credentials(uid: 65534, gid: 65534, groups: []))
    }

    @Test func authNoneIsAnonymousAndOtherFlavorsAreRefused() {
        let options = ClientOptions()
        #expect(ExportRegistry.squash(.none, options: options) == Credentials(uid: 65534, gid: 65534, groups: []))
        #expect(ExportRegistry.squash(.other(flavor: 6), options: options) == nil)
    }
}

@Suite struct ClientKeyTests {
    @Test(arguments: [
        ("10.0.0.17", "10.0.0.17"), ("fd00::1", "fd00--1"), ("lab-pc.example", "lab-pc.example"),
        ("../../etc", "_._.._etc"), ("..", "_."), ("a/b", "a_b"), ("", "_"), ("name with space", "name_with_space"),
    ])
    func keysAreSafePathComponents(raw: String, key: String) {
        let sanitized = sanitizedClientKey(raw)
        #expect(sanitized == key)
        #expect(!sanitized.contains("/") && sanitized != "." && sanitized != ".." && !sanitized.hasPrefix("."))
    }

    @Test func keysAreBounded() {
        #expect(sanitizedClientKey(String(repeating: "x", count: 1000)).utf8.count <= 128)
        #expect(sanitizedClientKey(String(repeating: "x", count: 128)) == String(repeating: "x", count: 128))
        #expect(sanitizedClientKey(String(repeating: "x", count: 129)) == String(repeating: "x", count: 128))
    }

    /// IPv4 addresses are written without interpolation (every call's admission formats one):
    /// the same text as the usual dotted quad, for every width of octet.
    @Test(arguments: [0, 0xffff_ffff, 0x0a00_6407, 0x7f00_0001, 0xc0a8_0a63, 0x6463_0a09] as [UInt32])
    func ipv4AddressesAreDottedQuads(value: UInt32) {
        let expected = "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
        #expect("\(IPAddress.v4(value))" == expected)
        #expect(sanitizedClientKey("\(IPAddress.v4(value))") == expected)
    }
}

@Suite struct ServerFileHandleTests {
    @Test func roundTrips() throws {
        let object = try #require(ObjectHandle(bytes: UnionNamespaceProbe.sampleHandleBytes()))
        let handle = ServerFileHandle(exportID: 0xabcdef, clientTag: 0x1234_5678, object: object)
        #expect(handle.bytes.count == 28)
        let decoded = try ServerFileHandle(bytes: handle.bytes)
        #expect(decoded == handle)
    }

    @Test(arguments: [[], [1], [2, 0, 0, 0, 0, 0, 0, 0, 1], [UInt8](repeating: 1, count: 65)])
    func malformedBytesAreRejected(bytes: [UInt8]) {
        #expect(throws: ServerFileHandle.DecodeFailure.self) { try ServerFileHandle(bytes: bytes) }
    }
}

/// A real union handle, taken from a namespace over an empty temporary layer.
enum UnionNamespaceProbe {
    static func sampleHandleBytes() throws -> [UInt8] {
        let directory = "/tmp/strata-handle-probe-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: "\(directory)/lower", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let namespace = try UnionNamespace(
            upper: "\(directory)/upper", lowers: ["\(directory)/lower"], logger: .init(label: "probe"))
        defer { namespace.close() }
        return namespace.rootHandle.bytes
    }
}
