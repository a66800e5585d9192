/// Why a piece of XDR (RFC 4506) could not be decoded.
///
/// Decoders never trap on hostile input: every failure is one of these, thrown before anything
/// is allocated for the offending item.
public enum XDRError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The buffer ended `needed` bytes into an item of which only `available` were present.
    case truncated(needed: Int, available: Int)
    /// A variable-length item announced `length` elements or bytes; at most `limit` are allowed.
    case lengthTooLarge(length: UInt32, limit: Int)
    /// An XDR bool (RFC 4506 §4.4) that is neither 0 nor 1.
    case invalidBool(UInt32)
    /// An enum or union discriminant with a value the type does not define.
    case invalidEnum(type: String, value: UInt32)
    /// Padding bytes after opaque data or a string that are not zero (RFC 4506 §4.10).
    case nonZeroPadding

    public var description: String {
        switch self {
        case .truncated(let needed, let available):
            return "XDR data truncated: needed \(needed) bytes, \(available) available"
        case .lengthTooLarge(let length, let limit):
            return "XDR length \(length) exceeds the limit of \(limit)"
        case .invalidBool(let value):
            return "XDR bool has value \(value); only 0 and 1 are allowed"
        case .invalidEnum(let type, let value):
            return "XDR enum \(type) has no value \(value)"
        case .nonZeroPadding:
            return "XDR padding bytes are not zero"
        }
    }
}
