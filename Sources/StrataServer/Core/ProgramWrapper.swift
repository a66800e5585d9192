import SunRPC

/// An RPC program that wraps another one (metering, tracing): it serves the same program and versions, and a
/// procedure is idempotent or blocking as the inner program says. Whether a call may be answered on the event loop
/// stays each wrapper's own choice: a traced call must reach `handle`, where it is recorded.
protocol ProgramWrapper: RPCProgramHandler {
    var inner: any RPCProgramHandler { get }
}

extension ProgramWrapper {
    var program: UInt32 { self.inner.program }
    var versions: ClosedRange<UInt32> { self.inner.versions }

    func isNonIdempotent(version: UInt32, procedure: UInt32) -> Bool {
        self.inner.isNonIdempotent(version: version, procedure: procedure)
    }

    func isNonBlocking(version: UInt32, procedure: UInt32) -> Bool {
        self.inner.isNonBlocking(version: version, procedure: procedure)
    }
}
