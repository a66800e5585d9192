import NIOCore
import Synchronization

// What bounds one TCP connection's share of the server (without it, unbounded finished replies and
// unbounded connections let one unauthenticated client take memory and descriptors from all).

/// One TCP connection's counters, shared between its event loop, the pool threads running its
/// calls, and the server's connection table (which picks the idle connection to drop).
final class RPCConnectionLedger: Sendable {
    let channel: any Channel
    /// Reply bytes computed for this connection and not yet written to its socket.
    let queuedReplyBytes = Atomic<Int>(0)
    /// Calls read from this connection and not yet answered (executing, or waiting to start).
    let callsInProgress = Atomic<Int>(0)
    /// `NIODeadline.now().uptimeNanoseconds` of the last call read or reply written.
    let lastActivity = Atomic<UInt64>(0)
    let resources: RPCServerResources
    let maxQueuedReplyBytes: Int
    let maxQueuedReplyBytesOverall: Int

    init(channel: any Channel, resources: RPCServerResources, configuration: RPCServerConfiguration) {
        self.channel = channel
        self.resources = resources
        self.maxQueuedReplyBytes = max(1, configuration.maxQueuedReplyBytesPerConnection)
        self.maxQueuedReplyBytesOverall = max(1, configuration.maxQueuedReplyBytes)
        self.touch()
    }

    func touch(at now: NIODeadline = .now()) {
        self.lastActivity.store(now.uptimeNanoseconds, ordering: .relaxed)
    }

    /// Whether a call of this connection may start now. Checked on the event loop before a
    /// call is handed to the pool and again on the pool thread before it runs, so that a burst
    /// of pipelined calls stops producing replies once the client stopped reading them.
    var mayStartCall: Bool {
        let mine = self.queuedReplyBytes.load(ordering: .relaxed)
        if mine > self.maxQueuedReplyBytes { return false }
        // Over the overall budget only connections whose replies all went out may start calls:
        // clients that read are still served, those that do not wait for their own replies.
        if mine > 0, self.resources.queuedReplyBytes.load(ordering: .relaxed) > self.maxQueuedReplyBytesOverall {
            return false
        }
        return true
    }

    var isOverItsReplyLimit: Bool {
        self.queuedReplyBytes.load(ordering: .relaxed) > self.maxQueuedReplyBytes
    }

    /// A reply of `bytes` exists for this connection (computed, not yet written).
    func replyQueued(bytes: Int) {
        self.queuedReplyBytes.add(bytes, ordering: .relaxed)
        self.resources.queuedReplyBytes.add(bytes, ordering: .relaxed)
    }

    /// A reply of `bytes` was written to the socket, or dropped.
    func replyGone(bytes: Int) {
        self.queuedReplyBytes.subtract(bytes, ordering: .relaxed)
        self.resources.queuedReplyBytes.subtract(bytes, ordering: .relaxed)
    }

    /// Idle: nothing to execute and nothing to send.
    var isIdle: Bool {
        self.callsInProgress.load(ordering: .relaxed) == 0 && self.queuedReplyBytes.load(ordering: .relaxed) == 0
    }
}

/// What servers sharing one `RPCServerConfiguration` share: their open connections (for the
/// connection limit) and the reply bytes not yet sent (for the overall reply budget).
final class RPCServerResources: Sendable {
    let queuedReplyBytes = Atomic<Int>(0)
    private let connections = Mutex<[ObjectIdentifier: RPCConnectionLedger]>([:])

    var connectionCount: Int { self.connections.withLock { $0.count } }

    /// What `admit` decided.
    enum Admission: Equatable {
        case admitted
        /// Admitted after closing the connection that had been idle longest.
        case admittedClosingIdle
        /// At the limit with no idle connection to close.
        case refused
    }

    /// Records a new connection, at the limit closing the one idle longest (Linux knfsd's
    /// svc_check_conn_limits drops the oldest temporary socket the same way).
    func admit(_ ledger: RPCConnectionLedger, limit: Int) -> Admission {
        let (admission, victim) = self.connections.withLock { table -> (Admission, RPCConnectionLedger?) in
            guard table.count >= limit else {
                table[ObjectIdentifier(ledger)] = ledger
                return (.admitted, nil)
            }
            var victim: RPCConnectionLedger? = nil
            var oldest = UInt64.max
            for candidate in table.values where candidate.isIdle {
                let last = candidate.lastActivity.load(ordering: .relaxed)
                if last < oldest {
                    oldest = last
                    victim = candidate
                }
            }
            guard let victim else { return (.refused, nil) }
            table[ObjectIdentifier(victim)] = nil
            table[ObjectIdentifier(ledger)] = ledger
            return (.admittedClosingIdle, victim)
        }
        victim?.channel.close(promise: nil)
        return admission
    }

    func remove(_ ledger: RPCConnectionLedger) {
        _ = self.connections.withLock { $0.removeValue(forKey: ObjectIdentifier(ledger)) }
    }
}
