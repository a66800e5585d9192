import NIOCore
import NIOPosix
import Testing

@testable import NFS3Client

@Suite struct EventLoopTaskExecutorTests {
    /// A task that prefers a loop's executor, and its child tasks, run on that loop, also after awaiting a future
    /// completed there: what keeps a replaying client on its connection's thread.
    @Test func tasksThatPreferTheLoopStayOnIt() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loop = group.next()
        let onLoop = await withTaskExecutorPreference(EventLoopTaskExecutor(loop)) { () async -> [Bool] in
            var seen = [loop.inEventLoop]
            for round in 0..<20 {
                let value = try? await loop.submit { round }.get()
                seen.append(value == round && loop.inEventLoop)
            }
            let children = await withTaskGroup(of: Bool.self) { tasks in
                for _ in 0..<8 {
                    tasks.addTask {
                        _ = try? await loop.scheduleTask(in: .milliseconds(1)) {}.futureResult.get()
                        return loop.inEventLoop
                    }
                }
                return await tasks.reduce(into: [Bool]()) { $0.append($1) }
            }
            return seen + children
        }
        #expect(onLoop.count == 29)
        #expect(onLoop.allSatisfy { $0 })
        // Without the preference the same task runs on the global executor, off the loop.
        let offLoop = await Task.detached { loop.inEventLoop }.value
        #expect(!offLoop)
        try await group.shutdownGracefully()
    }
}
