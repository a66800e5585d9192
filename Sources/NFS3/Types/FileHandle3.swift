import NIOCore
import XDR

// Transcribed from RFC 1813 §2.5: struct nfs_fh3 { opaque data<NFS3_FHSIZE>; };

/// nfs_fh3: an opaque file handle of at most `NFS3.fileHandleMaxBytes` (64) bytes
/// (RFC 1813 §2.5). Also MOUNT's fhandle3 (RFC 1813 §5.1.5), which has the same encoding.
public struct FileHandle3: Sendable, Hashable, XDRCodable, CustomStringConvertible {
    /// The handle's bytes. The server gives them meaning; on the wire they are opaque.
    public var data: [UInt8]

    public init(_ data: [UInt8]) {
        self.data = data
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.data = try buffer.readXDRVariableOpaque(maxLength: NFS3.fileHandleMaxBytes)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDRVariableOpaque(self.data)
    }

    /// The bytes this handle occupies on the wire.
    public var encodedSize: Int { xdrOpaqueSize(self.data.count) }

    public var description: String {
        self.data.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
