import Testing

@testable import StrataBench

@Suite struct BenchArgumentTests {
    @Test func countsAreDecimalAndSizesBinary() throws {
        #expect(try parseCount("5000", option: "--n") == 5000)
        #expect(try parseCount("10k", option: "--n") == 10_000)
        #expect(try parseCount("2M", option: "--n") == 2_000_000)
        #expect(try parseSize("4096", option: "--bs") == 4096)
        #expect(try parseSize("64K", option: "--bs") == 65536)
        #expect(try parseSize("1M", option: "--bs") == 1 << 20)
        #expect(try parseSize("2G", option: "--size") == 2 << 30)
        #expect(throws: (any Error).self) { try parseCount("ten", option: "--n") }
        #expect(throws: (any Error).self) { try parseSize("0", option: "--bs") }
        #expect(throws: (any Error).self) { try parseSize("1T", option: "--bs") }
    }

    @Test func sourceRangesExpand() throws {
        #expect(try expandAddressRange("127.0.0.5") == ["127.0.0.5"])
        #expect(
            try expandAddressRange("127.0.0.254-127.0.1.1") == ["127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"])
        let network = try expandAddressRange("127.0.3.0/29")
        #expect(network == (1...6).map { "127.0.3.\($0)" }, "network and broadcast addresses left out")
        #expect(try expandAddressRange("127.1.0.0/16").count == 65534)
        #expect(throws: (any Error).self) { try expandAddressRange("127.0.0.9-127.0.0.2") }
        #expect(throws: (any Error).self) { try expandAddressRange("127.0.0/24") }
        #expect(throws: (any Error).self) { try expandAddressRange("127.0.0.0/8") }
        #expect(throws: (any Error).self) { try expandAddressRange("127.0.0.300") }
    }

    @Test func workersShareOperationsWithoutOverlap() {
        // Worker k of j takes indices k, k+j, ...: every index exactly once.
        for connections in 1...5 {
            for total in [0, 1, 7, 100] {
                let shares = (0..<connections).map { k in Worker.share(of: total, index: k, connections: connections) }
                #expect(shares.reduce(0, +) == total)
                var seen = Set<Int>()
                for k in 0..<connections {
                    for local in 0..<shares[k] { seen.insert(k + local * connections) }
                }
                #expect(seen == Set(0..<total))
            }
        }
    }

    @Test func reportLineAndJSONCarryEveryFigure() {
        var report = PhaseReport(
            workload: "getattr", phase: "getattr", ops: 1000, units: 1000, unit: "ops/s", seconds: 0.5, p50: 100,
            p99: 300,
            max: 900, errors: 2, firstError: "GETATTR: \"stale\"", qd: 32, connections: 2, clientCPUSeconds: 0.01,
            serverCPUSeconds: 0.05, hostBusyPercent: 150)
        report.extra = [("label", "x"), ("bytes", "42")]
        #expect(report.rate == 2000)
        #expect(report.clientMicrosecondsPerOp == 10)
        #expect(report.serverMicrosecondsPerOp == 50)
        let json = report.json
        for fragment in [
            "\"ops\":1000", "\"rate\":2000.0", "\"p99_us\":300.0", "\"errors\":2", "\"client_us_per_op\":10.00",
            "\"server_us_per_op\":50.00", "\"label\":\"x\"", "\"bytes\":42",
            "\"first_error\":\"GETATTR: \\\"stale\\\"\"",
        ] {
            #expect(json.contains(fragment), "\(fragment) missing from \(json)")
        }
        #expect(report.line.contains("10.0 µs/op"))
    }
}
