import Foundation
import Synchronization
import Testing

@testable import StrataServer

/// Opens of different namespaces run side by side; opens of one namespace one after the other.
@Suite struct OpeningLockTests {
    /// A room of 200 clients powering on: every client's first open is inside at the same time
    /// (each waits, bounded, until all are). With a fixed set of 64 stripes, keys sharing a stripe
    /// waited for each other and never were all inside together.
    @Test func opensOfDifferentKeysNeverWaitForEachOther() {
        let lock = OpeningLock()
        let clients = 200
        let inside = Atomic<Int>(0)
        let allInside = Atomic<Int>(0)
        let finished = DispatchGroup()
        for client in 0..<clients {
            finished.enter()
            Thread {
                lock.opening("127.1.\(client / 256).\(client % 256)") {
                    inside.add(1, ordering: .sequentiallyConsistent)
                    let deadline = Date().addingTimeInterval(30)
                    while inside.load(ordering: .sequentiallyConsistent) < clients && Date() < deadline {
                        usleep(1000)
                    }
                    if inside.load(ordering: .sequentiallyConsistent) == clients {
                        allInside.add(1, ordering: .relaxed)
                    }
                }
                finished.leave()
            }.start()
        }
        #expect(finished.wait(timeout: .now() + 60) == .success)
        let together = allInside.load(ordering: .relaxed)
        #expect(together == clients, "opens of different keys waited for each other")
        #expect(lock.runningCount == 0)
    }

    @Test func opensOfOneKeyRunOneAfterTheOther() {
        let lock = OpeningLock()
        let running = Atomic<Int>(0)
        let overlapped = Atomic<Bool>(false)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<50 {
                lock.opening("127.0.0.2") {
                    if running.add(1, ordering: .sequentiallyConsistent).newValue > 1 {
                        overlapped.store(true, ordering: .relaxed)
                    }
                    sched_yield()
                    running.subtract(1, ordering: .sequentiallyConsistent)
                }
            }
        }
        let didOverlap = overlapped.load(ordering: .relaxed)
        #expect(!didOverlap)
    }

    /// `exclusively` waits for the opens running and holds new ones off.
    @Test func exclusiveHoldersSeeNoOpenRunning() {
        let lock = OpeningLock()
        let running = Atomic<Int>(0)
        let sawOpen = Atomic<Bool>(false)
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for round in 0..<50 {
                if worker == 0 && round % 5 == 0 {
                    lock.exclusively {
                        if running.load(ordering: .sequentiallyConsistent) != 0 {
                            sawOpen.store(true, ordering: .relaxed)
                        }
                    }
                } else {
                    lock.opening("client-\(worker)") {
                        running.add(1, ordering: .sequentiallyConsistent)
                        sched_yield()
                        running.subtract(1, ordering: .sequentiallyConsistent)
                    }
                }
            }
        }
        let openSeen = sawOpen.load(ordering: .relaxed)
        #expect(!openSeen)
    }
}
