import Testing

@testable import StrataBench

@Suite struct HostSampleTests {
    @Test func theCPULineOfProcStatGivesBusyAndTotalSeconds() {
        let stat = """
            cpu  1000 20 300 5000 40 6 70 8 0 0
            cpu0 500 10 150 2500 20 3 35 4 0 0
            intr 12345
            """
        let sample = HostSample.parse(stat, ticksPerSecond: 100)
        // busy: user 1000 + nice 20 + system 300 + irq 6 + softirq 70; total adds idle 5000, iowait 40, steal 8.
        #expect(sample == HostSample(busySeconds: 13.96, totalSeconds: 64.44))
    }

    @Test func aMissingOrShortCPULineGivesNothing() {
        #expect(HostSample.parse("intr 1\nctxt 2\n", ticksPerSecond: 100) == nil)
        #expect(HostSample.parse("cpu  1 2 3\n", ticksPerSecond: 100) == nil)
        #expect(HostSample.parse("cpu  1 2 3 x 5 6 7 8\n", ticksPerSecond: 100) == nil)
    }

    @Test func thisHostCanBeRead() throws {
        let sample = try #require(HostSample.read())
        #expect(sample.totalSeconds > 0 && sample.busySeconds <= sample.totalSeconds)
    }
}
