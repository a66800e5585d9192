import NIOCore
import Union

/// The NFS file handle Strata hands out (28 bytes; RFC 1813 allows 64):
///
///     byte 0       format version (2)
///     bytes 1-3    exportID: which export (24 bits of a hash of its path: survives restarts)
///     bytes 4-7    clientTag: which client's namespace (32 bits of a hash of the client key and
///                  its reset generation; 0 when the export has no per-client upper)
///     bytes 8-27   the union's object handle: fileid and its tag (see `ObjectHandle`)
///
/// Nothing in it is trusted: the namespace is always derived from the caller, and the handle
/// must name that same namespace or it is refused, so client A's handle never opens client B's
/// upper layer even if the identifiers were forged or collided; the union then checks the
/// object's tag under that namespace's secret, so a guessed fileid is stale.
public struct ServerFileHandle: Sendable, Hashable {
    public static let version: UInt8 = 2
    public static let headerBytes = 8
    public static let encodedBytes = ServerFileHandle.headerBytes + ObjectHandle.encodedLength

    public var exportID: UInt32
    public var clientTag: UInt32
    public var object: ObjectHandle

    public init(exportID: UInt32, clientTag: UInt32, object: ObjectHandle) {
        self.exportID = exportID & 0xff_ffff
        self.clientTag = clientTag
        self.object = object
    }

    /// Why bytes from the wire are not a handle of ours.
    public enum DecodeFailure: Error, Sendable {
        /// Wrong length, unknown version or a malformed object handle: NFS3ERR_BADHANDLE.
        case malformed
    }

    public init(bytes: [UInt8]) throws(DecodeFailure) {
        let decoded = bytes.withUnsafeBytes { (raw) -> ServerFileHandle? in
            guard raw.count == ServerFileHandle.encodedBytes, raw[0] == ServerFileHandle.version,
                let object = ObjectHandle(raw: UnsafeRawBufferPointer(rebasing: raw[ServerFileHandle.headerBytes...]))
            else { return nil }
            let word = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            let tag = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            return ServerFileHandle(exportID: word & 0xff_ffff, clientTag: tag, object: object)
        }
        guard let decoded else { throw .malformed }
        self = decoded
    }

    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: ServerFileHandle.encodedBytes) { buffer, count in
            self.write(to: UnsafeMutableRawBufferPointer(buffer))
            count = ServerFileHandle.encodedBytes
        }
    }

    /// Writes the `encodedBytes` bytes at the start of `b` (a reply encoder writes handles in place).
    public func write(to b: UnsafeMutableRawBufferPointer) {
        precondition(b.count >= ServerFileHandle.encodedBytes)
        b.storeBytes(
            of: (UInt32(ServerFileHandle.version) << 24 | self.exportID).bigEndian, toByteOffset: 0, as: UInt32.self)
        b.storeBytes(of: self.clientTag.bigEndian, toByteOffset: 4, as: UInt32.self)
        self.object.write(to: UnsafeMutableRawBufferPointer(rebasing: b[ServerFileHandle.headerBytes...]))
    }

    /// The export identifier of the handle an XDR-encoded call's arguments start with, read
    /// in place (for metrics, before the call decodes it); nil if it is not one of ours.
    public static func exportID(peekingAt arguments: ByteBuffer) -> UInt32? {
        guard let length = arguments.getInteger(at: arguments.readerIndex, as: UInt32.self),
            length == ServerFileHandle.encodedBytes,
            let word = arguments.getInteger(at: arguments.readerIndex + 4, as: UInt32.self),
            word >> 24 == UInt32(ServerFileHandle.version)
        else { return nil }
        return word & 0xff_ffff
    }
}
