// Transcribed from RFC 1813 §3.3.0: void NFSPROC3_NULL(void) = 0;

/// NULL takes no arguments (RFC 1813 §3.3.0).
public typealias Null3Args = NFS3Void
/// NULL returns nothing (RFC 1813 §3.3.0).
public typealias Null3Res = NFS3Void
