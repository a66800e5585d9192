import NIOCore

/// Limits and sizes of an `RPCServer`.
public struct RPCServerConfiguration: Sendable {
    /// The largest record accepted on TCP (all fragments together); a client announcing a larger
    /// one is disconnected before the record is buffered.
    public var maxRecordBytes: Int = 4 << 20
    /// Threads of the pool handlers run on, when the caller lets `RPCServer` make one
    /// (informational when a pool is passed in).
    public var threadPoolSize: Int = 16
    /// Entries of the duplicate request cache (LRU); 0 disables it.
    public var duplicateCacheEntries: Int = 4096
    /// Calls of one TCP connection being executed at once; beyond this the server stops reading
    /// from that connection until replies went out.
    public var maxOutstandingPerConnection: Int = 64
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
}
