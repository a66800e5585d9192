#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as the access rules and client keys see it. IPv4-mapped IPv6
/// addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports) are folded to IPv4 so one
/// rule matches a client however it connected.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(UInt32)
    case v6([UInt8])  // 16 bytes

    /// Parses dotted-quad IPv4 or any textual IPv6 form (inet_pton); nil if it is neither.
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self = .v4(UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        self.init(v6Bytes: bytes)
    }

    init(v6Bytes bytes: [UInt8]) {
        let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        if Array(bytes[0..<12]) == mappedPrefix {
            self = .v4(UInt32(bytes[12]) << 24 | UInt32(bytes[13]) << 16 | UInt32(bytes[14]) << 8 | UInt32(bytes[15]))
        } else {
            self = .v6(bytes)
        }
    }

    /// The address length in bits (32 or 128): the longest meaningful prefix.
    public var bitWidth: Int {
        switch self {
        case .v4: return 32
        case .v6: return 128
        }
    }

    /// The prefix length of an IPv4 netmask such as 255.255.255.0 (24); nil if the mask's ones
    /// are not contiguous or it is not IPv4.
    public var contiguousPrefixLength: Int? {
        guard case .v4(let mask) = self else { return nil }
        let ones = mask.leadingZeroBitCount == 0 ? (~mask).leadingZeroBitCount : 0
        let expected: UInt32 = ones == 0 ? 0 : ~(UInt32.max >> UInt32(ones))
        return mask == expected ? ones : nil
    }

    /// True if the first `prefixLength` bits of `self` and `other` agree (and both are of
    /// the same family).
    public func sharesPrefix(with other: IPAddress, length prefixLength: Int) -> Bool {
        switch (self, other) {
        case (.v4(let mine), .v4(let theirs)):
            guard prefixLength > 0 else { return true }
            let mask: UInt32 = prefixLength >= 32 ? .max : ~(UInt32.max >> UInt32(prefixLength))
            return mine & mask == theirs & mask
        case (.v6(let mine), .v6(let theirs)):
            var remaining = prefixLength
            for index in 0..<16 where remaining > 0 {
                let bits = min(8, remaining)
                let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
                if mine[index] & mask != theirs[index] & mask { return false }
                remaining -= bits
            }
            return true
        default:
            return false
        }
    }

    public var description: String {
        switch self {
        case .v4(let value):
            // Written digit by digit into the string's own (inline) storage: every call's admission
            // formats its client's address, and interpolation cost more than the rest of the key.
            return String(unsafeUninitializedCapacity: 15) { text in
                var count = 0
                for shift in [24, 16, 8, 0] {
                    let octet = Int(value >> UInt32(shift) & 0xff)
                    if octet >= 100 {
                        text[count] = UInt8(ascii: "0") + UInt8(octet / 100)
                        count += 1
                    }
                    if octet >= 10 {
                        text[count] = UInt8(ascii: "0") + UInt8(octet / 10 % 10)
                        count += 1
                    }
                    text[count] = UInt8(ascii: "0") + UInt8(octet % 10)
                    count += 1
                    if shift != 0 {
                        text[count] = UInt8(ascii: ".")
                        count += 1
                    }
                }
                return count
            }
        case .v6(var bytes):
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            let ok = bytes.withUnsafeMutableBytes { raw in
                inet_ntop(AF_INET6, raw.baseAddress, &text, socklen_t(text.count)) != nil
            }
            return ok ? String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        }
    }
}
