import NIOCore

/// Runs Swift tasks on one NIO event loop: a task that prefers it (`withTaskExecutorPreference`) and awaits the
/// futures of connections on that loop never changes thread. By default an awaited future's continuation resumes
/// on the global concurrent executor: every call then crossed two threads (the event loop completing the future,
/// a pool thread running the task, the event loop again to write the next call), and a replaying load generator
/// spent more CPU in those hand-offs than in the calls themselves.
public final class EventLoopTaskExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        // On the loop itself `execute` queues the job for the loop's next pass, without waking it.
        self.eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
