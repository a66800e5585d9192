import Basics
import Foundation
import Glibc
import Testing

@testable import Union

/// One writer at a time per file, asleep rather than spinning in the kernel (`FileWriteGate`).
@Suite struct FileWriteGateTests {
    /// A writer that holds file `key` until `release` is signalled, recording when it entered.
    final class Entries: @unchecked Sendable {
        let lock = NSLock()
        var order: [String] = []
        var inside = 0
        var mostInside = 0

        func enter(_ name: String) {
            self.lock.lock()
            self.order.append(name)
            self.inside += 1
            self.mostInside = max(self.mostInside, self.inside)
            self.lock.unlock()
        }

        func leave() {
            self.lock.lock()
            self.inside -= 1
            self.lock.unlock()
        }
    }

    /// A writer of `key` that holds the file until `release` is signalled (`entered` and `leaving` run inside, around
    /// the hold; `failing`: its write then fails).
    func heldWriter(
        _ gate: FileWriteGate, _ key: UInt64, failing: Bool = false, entered: @escaping @Sendable () -> Void = {},
        leaving: @escaping @Sendable () -> Void = {}
    ) -> (writer: Worker<Void>, release: DispatchSemaphore) {
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let writer = Worker {
            try gate.writing(key) { () throws(UnionError) in
                entered()
                held.signal()
                _ = release.wait(timeout: .now() + 60)
                leaving()
                if failing { throw .io(errno: ENOSPC, call: "pwrite", path: "test") }
            }
        }
        #expect(held.wait(timeout: .now() + 20) == .success)
        return (writer, release)
    }

    @Test func writersOfOneFileTakeItOneAtATimeInArrivalOrder() throws {
        let gate = FileWriteGate()
        let entries = Entries()
        let (first, release) = self.heldWriter(gate, 7, entered: { entries.enter("first") }, leaving: entries.leave)
        var waiters: [Worker<Void>] = []
        for (index, name) in ["second", "third"].enumerated() {
            waiters.append(
                Worker {
                    gate.writing(7) {
                        entries.enter(name); entries.leave()
                    }
                })
            #expect(eventually { gate.waiting(7) == index + 1 }, "\(name) did not wait for the file")
        }
        release.signal()
        try first.join()
        for waiter in waiters { try waiter.join() }
        #expect(entries.order == ["first", "second", "third"])
        #expect(entries.mostInside == 1)
        #expect(gate.filesInUse == 0)
    }

    /// Writers of other files, in the same stripe too, never wait for a file being written.
    @Test func writersOfOtherFilesDoNotWait() throws {
        let gate = FileWriteGate()
        let (holder, release) = self.heldWriter(gate, 7)
        for other: UInt64 in [8, 7 + 16, 7 + 16 * 5] {
            let writer = Worker { gate.writing(other) { other } }
            #expect(try writer.join(20) == other)
        }
        release.signal()
        try holder.join()
        #expect(gate.filesInUse == 0)
    }

    /// A writer whose write fails hands the file on all the same.
    @Test func aFailedWriteHandsTheFileOn() throws {
        let gate = FileWriteGate()
        let (failing, release) = self.heldWriter(gate, 3, failing: true)
        let next = Worker { gate.writing(3) { true } }
        #expect(eventually { gate.waiting(3) == 1 })
        release.signal()
        #expect(throws: UnionError.self) { try failing.join() }
        #expect(try next.join())
        #expect(gate.filesInUse == 0)
    }

    /// Concurrent WRITEs of one file through a namespace: every byte lands, and the gate is left empty.
    @Test func concurrentWritesOfOneFileAllLand() async throws {
        let f = Fixture(in: "/dev/shm")
        let u = try f.open()
        defer { u.close() }
        let (h, _) = try u.create(in: u.rootHandle, b("shared"), mode: .guarded, attributes: .init(), as: root)
        let chunk = 4096
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    let bytes = [UInt8](repeating: UInt8(ascii: "a") + UInt8(writer), count: chunk)
                    for round in 0..<16 {
                        _ = try? bytes.withUnsafeBytes {
                            try u.write(
                                h, offset: UInt64((round * 8 + writer) * chunk), data: $0, stable: .unstable, as: root)
                        }
                    }
                }
            }
        }
        let data = try u.read(h, offset: 0, count: 8 * 16 * chunk, as: root).data
        #expect(data.count == 8 * 16 * chunk)
        for block in 0..<(8 * 16) {
            let expected = UInt8(ascii: "a") + UInt8(block % 8)
            #expect(data[block * chunk..<(block + 1) * chunk].allSatisfy { $0 == expected }, "block \(block)")
        }
        #expect(try #require(u.upper).fileWrites.filesInUse == 0)
    }
}
