import NIOCore
import XDR

// Transcribed from RFC 1813 §2.5: struct nfstime3 { uint32 seconds; uint32 nseconds; };

/// nfstime3: seconds and nanoseconds since 1970-01-01 00:00 UTC (RFC 1813 §2.5).
public struct NFSTime3: Sendable, Hashable, XDRCodable {
    public var seconds: UInt32
    public var nseconds: UInt32

    public init(seconds: UInt32 = 0, nseconds: UInt32 = 0) {
        self.seconds = seconds
        self.nseconds = nseconds
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.seconds = try buffer.readXDRUInt32()
        self.nseconds = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.seconds)
        buffer.writeXDR(self.nseconds)
    }
}
