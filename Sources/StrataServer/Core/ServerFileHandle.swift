import Union

/// The NFS file handle Strata hands out (at most 64 bytes, RFC 1813 NFS3_FHSIZE):
///
///     byte 0      format version (1)
///     bytes 1-3   export identifier (24 bits, from the export path: survives restarts)
///     bytes 4-7   client namespace identifier (32 bits of the client key's hash; 0 when the
///                 export has no per-client upper)
///     bytes 8...  the union's object handle (at most 56 bytes)
///
/// Nothing in it is trusted: the namespace is always derived from the caller, and the handle
/// must name that same namespace or it is refused, so client A's handle never opens client B's
/// upper layer even if the identifiers were forged or collided.
public struct ServerFileHandle: Sendable, Hashable {
    public static let version: UInt8 = 1
    public static let headerBytes = 8
    public static let maxBytes = 64

    public var exportID: UInt32
    public var namespaceID: UInt32
    public var object: ObjectHandle

    public init(exportID: UInt32, namespaceID: UInt32, object: ObjectHandle) {
        self.exportID = exportID & 0xff_ffff
        self.namespaceID = namespaceID
        self.object = object
    }

    /// Why bytes from the wire are not a handle of ours.
    public enum DecodeFailure: Error, Sendable {
        /// Wrong length or unknown version: NFS3ERR_BADHANDLE.
        case malformed
    }

    public init(bytes: [UInt8]) throws(DecodeFailure) {
        guard bytes.count > ServerFileHandle.headerBytes, bytes.count <= ServerFileHandle.maxBytes,
            bytes[0] == ServerFileHandle.version
        else {
            throw .malformed
        }
        self.exportID = UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3])
        self.namespaceID = UInt32(bytes[4]) << 24 | UInt32(bytes[5]) << 16 | UInt32(bytes[6]) << 8 | UInt32(bytes[7])
        guard let object = ObjectHandle(bytes: Array(bytes[ServerFileHandle.headerBytes...])) else {
            throw .malformed
        }
        self.object = object
    }

    public var bytes: [UInt8] {
        var result: [UInt8] = [ServerFileHandle.version]
        result.reserveCapacity(ServerFileHandle.headerBytes + self.object.bytes.count)
        result.append(UInt8(truncatingIfNeeded: self.exportID >> 16))
        result.append(UInt8(truncatingIfNeeded: self.exportID >> 8))
        result.append(UInt8(truncatingIfNeeded: self.exportID))
        result.append(UInt8(truncatingIfNeeded: self.namespaceID >> 24))
        result.append(UInt8(truncatingIfNeeded: self.namespaceID >> 16))
        result.append(UInt8(truncatingIfNeeded: self.namespaceID >> 8))
        result.append(UInt8(truncatingIfNeeded: self.namespaceID))
        result.append(contentsOf: self.object.bytes)
        return result
    }
}
