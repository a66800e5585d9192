import Dispatch
import Foundation

/// Waits for SIGINT or SIGTERM (then returns, so the caller shuts down cleanly and unregisters
/// from rpcbind) and calls `onReload` on every SIGHUP.
enum SignalLoop {
    static func run(onReload: @escaping @Sendable () -> Void) async {
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
            signal(signalNumber, SIG_IGN)
        }
        let queue = DispatchQueue(label: "strata.signals")
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = OnceFlag()
            var sources: [DispatchSourceSignal] = []
            for signalNumber in [SIGINT, SIGTERM] {
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
                source.setEventHandler {
                    if once.claim() { continuation.resume() }
                }
                source.resume()
                sources.append(source)
            }
            let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
            hangup.setEventHandler(handler: onReload)
            hangup.resume()
            sources.append(hangup)
            // The sources must outlive this closure: keep them in a global for the process life.
            SignalSources.keep(sources)
        }
    }
}

/// Resumes a continuation at most once even if SIGINT and SIGTERM both arrive.
final class OnceFlag: @unchecked Sendable {
    // Protected by being touched only on the serial queue "strata.signals".
    private var claimed = false
    func claim() -> Bool {
        if self.claimed { return false }
        self.claimed = true
        return true
    }
}

enum SignalSources {
    nonisolated(unsafe) static var all: [DispatchSourceSignal] = []
    static func keep(_ sources: [DispatchSourceSignal]) { self.all = sources }
}
