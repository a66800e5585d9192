import NIOCore
import XDR

// Transcribed from RFC 1813 §2.5: cookieverf3, createverf3 and writeverf3 are
// `opaque[NFS3_*VERFSIZE]` with a size of 8.

/// An 8-byte opaque verifier: cookieverf3, createverf3 or writeverf3 (RFC 1813 §2.5).
///
/// Held as the big-endian `UInt64` of its eight bytes, which is byte-for-byte the wire form.
public struct Verifier3: Sendable, Hashable, XDRCodable, CustomStringConvertible {
    /// The eight bytes read as a big-endian integer.
    public var rawValue: UInt64

    /// The all-zero verifier (for example the cookieverf of a first READDIR).
    public static let zero = Verifier3(rawValue: 0)

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Creates a verifier from exactly eight bytes; `nil` for any other count.
    public init?<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        guard bytes.count == 8 else { return nil }
        self.rawValue = bytes.reduce(0) { ($0 << 8) | UInt64($1) }
    }

    /// The eight bytes in wire order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: self.rawValue >> (56 - 8 * UInt64($0))) }
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.rawValue = try buffer.readXDRUInt64()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.rawValue)
    }

    public var description: String {
        let hex = String(self.rawValue, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// cookieverf3 (RFC 1813 §2.5).
public typealias CookieVerifier3 = Verifier3
/// createverf3 (RFC 1813 §2.5).
public typealias CreateVerifier3 = Verifier3
/// writeverf3 (RFC 1813 §2.5).
public typealias WriteVerifier3 = Verifier3
