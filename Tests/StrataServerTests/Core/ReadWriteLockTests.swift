import Basics
import Foundation
import Testing

@testable import StrataServer

/// The shared lock every call takes on the registry, and the stamps calls move without a lock.
@Suite struct ReadWriteLockTests {
    @Test func readersDoNotWaitForEachOther() {
        let locked = ReadWriteLocked(0)
        let secondReaderIn = DispatchSemaphore(value: 0)
        let firstReaderIn = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            locked.withReadLock { (_: Int) -> Void in
                firstReaderIn.signal()
                // Bounded: an exclusive lock would time out here instead of hanging.
                _ = secondReaderIn.wait(timeout: .now() + 10)
            }
            done.signal()
        }
        #expect(firstReaderIn.wait(timeout: .now() + 10) == .success)
        let entered = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            locked.withReadLock { (_: Int) -> Void in entered.signal() }
        }
        let result = entered.wait(timeout: .now() + 5)
        secondReaderIn.signal()
        #expect(result == .success, "a second reader entered while the first held the lock")
        #expect(done.wait(timeout: .now() + 10) == .success)
    }

    @Test func writersExcludeEachOtherAndReaders() {
        let locked = ReadWriteLocked(0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<1000 {
                locked.withLock { $0 += 1 }
                _ = locked.withReadLock { $0 }
            }
        }
        #expect(locked.withReadLock { $0 } == 8000)
    }

    @Test func aTimeStampOnlyMovesForwardByAtLeastItsGranularity() {
        let stamp = TimeStamp(10)
        stamp.advance(to: 9, granularity: 0)
        #expect(stamp.seconds == 10, "never backwards")
        stamp.advance(to: 10.5, granularity: 1)
        #expect(stamp.seconds == 10, "less than the granularity later")
        stamp.advance(to: 11, granularity: 1)
        #expect(stamp.seconds == 11)
        DispatchQueue.concurrentPerform(iterations: 8) { index in
            for step in 0..<100 { stamp.advance(to: 12 + Double(step * 8 + index), granularity: 0.001) }
        }
        #expect(stamp.seconds == 12 + Double(99 * 8 + 7), "the latest of concurrent advances wins")
    }
}

@Suite struct RegistryUsageTests {
    /// Calls mark their namespace used under the shared lock (no table rewrite): a namespace
    /// in use must not be closed as idle, and its client's last call is reported.
    @Test func aCallKeepsItsNamespaceOpenAndIsReportedAsSeen() throws {
        let fixture = try RegistryFixture()
        let (registry, clock) = try fixture.clockedRegistry(.with(minimumIdle: 1, unmountedIdle: 1000, idle: 100))
        defer { registry.closeAll() }
        let before = Date().timeIntervalSince1970 - 2
        let (a, rootA) = try registry.mountOK(from: "127.0.0.2")
        _ = try registry.mountOK(from: "127.0.0.3")
        #expect(registry.openNamespaceCount == 2)

        clock.advance(50)
        let (used, _) = try registry.resolve(fileHandle: rootA, for: try call(from: "127.0.0.2")).get()
        #expect(used.namespace === a.namespace)
        clock.advance(60)
        #expect(registry.closeIdleNamespaces() == 1, "only the namespace unused for 110 s closes")
        #expect(!a.namespace.hasBeenClosed)
        #expect(registry.openNamespaceCount == 1)

        let reports = registry.clients()
        #expect(reports.count == 2)
        for report in reports {
            let seen = try #require(report.lastSeen, "client \(report.key) has called")
            #expect(seen >= before && seen <= Date().timeIntervalSince1970 + 2)
        }
    }
}
