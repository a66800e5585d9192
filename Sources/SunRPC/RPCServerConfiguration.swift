import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Limits and sizes of an `RPCServer`.
///
/// Servers started with copies of one configuration value share its connection limit and its
/// overall reply budget (`maxConnections`, `maxQueuedReplyBytes`): they are one process's
/// descriptors and memory. A configuration made with `init` starts a fresh share.
public struct RPCServerConfiguration: Sendable {
    /// The largest record accepted on TCP (all fragments together); a client announcing a larger
    /// one is disconnected before the record is buffered.
    public var maxRecordBytes: Int = 4 << 20
    /// The most fragments one record may be cut into on TCP; a client sending more is
    /// disconnected. Real clients send one fragment per record (Linux, FreeBSD, libnfs) or
    /// fragments of several KiB (libtirpc); thousands of tiny ones are an attack.
    public var maxFragmentsPerRecord: Int = 4096
    /// Threads of the pool handlers run on, when the caller lets `RPCServer` make one
    /// (informational when a pool is passed in).
    public var threadPoolSize: Int = 16
    /// Entries of the duplicate request cache (LRU); 0 disables it.
    public var duplicateCacheEntries: Int = 4096
    /// Calls of one TCP connection being executed at once; beyond this the server stops reading
    /// from that connection until replies went out.
    public var maxOutstandingPerConnection: Int = 64
    /// Pool threads one TCP connection's calls may occupy at once. A worker takes the
    /// connection's calls one after the other until none is left, and another is woken only
    /// when calls wait beyond the workers already on their way: few workers per connection
    /// keep the thread hand-offs and lock contention down (GETATTR at 32 in flight used about
    /// a third less CPU per call with 4 than with 16), while calls blocked on the disk still
    /// leave others of the connection a worker, and other connections have workers of their own.
    public var maxWorkersPerConnection: Int = 4
    /// Reply bytes of one TCP connection computed but not yet handed to the kernel. Beyond
    /// this the server starts no call of that connection and reads nothing more from it until
    /// the client has read enough (a client that pipelines large READs and never reads holds
    /// at most this much, plus the calls already running for it).
    public var maxQueuedReplyBytesPerConnection: Int = 8 << 20
    /// Reply bytes computed but not yet sent, over all connections of the servers sharing this
    /// configuration. Beyond this, connections that have replies waiting start no new call;
    /// connections with none still do, so clients that read keep being served.
    public var maxQueuedReplyBytes: Int = 128 << 20
    /// A connection whose unsent replies keep it over `maxQueuedReplyBytesPerConnection` and
    /// that lets none of them go for this long is closed (a client that never reads).
    public var replyStallTimeout: TimeAmount = .seconds(60)
    /// TCP connections open at once, over the servers sharing this configuration. At the limit
    /// a new connection makes the server close the connection that has been idle longest (as
    /// Linux knfsd does); when none is idle, the new one is closed. nil: derived from the
    /// descriptor limit when the server starts (`defaultMaxConnections`), leaving a reserve of
    /// descriptors for the files and namespaces calls need.
    public var maxConnections: Int? = nil
    /// Calls from all UDP clients of one socket being executed at once; datagrams beyond this
    /// are dropped (the clients retransmit).
    public var maxOutstandingUDP: Int = 512
    /// The largest UDP datagram received.
    public var maxDatagramBytes: Int = 65536
    /// A TCP connection with no traffic and no call executing for this long is closed (Linux
    /// knfsd closes idle connections after 6 minutes; clients reconnect transparently). nil:
    /// never.
    public var idleConnectionTimeout: TimeAmount? = .minutes(6)
    /// TCP listen backlog.
    public var backlog: Int32 = 256
    /// Named in bind errors so the user knows what to change, e.g.
    /// "set [server] nfs_port in the configuration or pass --nfs-port".
    public var portSettingHint: String? = nil

    /// The connections and queued reply bytes shared by servers using copies of this value.
    let resources = RPCServerResources()

    public init() {}

    public init(
        maxRecordBytes: Int = 4 << 20,
        threadPoolSize: Int = 16,
        duplicateCacheEntries: Int = 4096,
        maxOutstandingPerConnection: Int = 64,
        portSettingHint: String? = nil
    ) {
        self.maxRecordBytes = maxRecordBytes
        self.threadPoolSize = threadPoolSize
        self.duplicateCacheEntries = duplicateCacheEntries
        self.maxOutstandingPerConnection = maxOutstandingPerConnection
        self.portSettingHint = portSettingHint
    }

    /// The connection limit used when `maxConnections` is nil: the open-file limit less a
    /// reserve of a quarter of it (at least 256) for files, namespaces, the database and
    /// listening sockets; never below 16.
    public static func defaultMaxConnections(descriptorLimit: Int) -> Int {
        let reserve = max(256, descriptorLimit / 4)
        return max(16, descriptorLimit - reserve)
    }

    /// `defaultMaxConnections(descriptorLimit:)` for this process's current RLIMIT_NOFILE.
    public static func defaultMaxConnections() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        // RLIM_INFINITY is all ones: clamp to something an Int holds.
        let current = min(UInt64(limit.rlim_cur), UInt64(Int32.max))
        return Self.defaultMaxConnections(descriptorLimit: Int(current))
    }
}
