import Basics
import Foundation
import Testing

/// A closure kept in a `Locked` (a test hook, a metrics source) read very often: read through `current`, it stays the
/// closure it was. Read through `withLock { $0 }` in a build that does not specialise `withLock`, each read wrapped it
/// in two more thunks, and after a few hundred thousand reads calling it overflowed the thread's stack (a test hook
/// read at every flush crashed the test process).
@Suite struct LockedClosureTests {
    struct Failure: Error {}

    @Test func aStoredClosureReadManyTimesStaysCallable() throws {
        let calls = Locked(0)
        let hook = Locked<(@Sendable () throws(Failure) -> Void)?>({ () throws(Failure) in calls.withLock { $0 += 1 } })
        for _ in 0..<300_000 { _ = hook.current }
        let read = try #require(hook.current)
        try read()
        let source = Locked<(@Sendable (String) -> Int)?>({ $0.count })
        for _ in 0..<300_000 { _ = source.current }
        #expect(source.current?("four") == 4)
        #expect(calls.withLock { $0 } == 1)
    }
}
