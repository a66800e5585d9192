/// FNV-1a (Fowler–Noll–Vo): a stable hash. Swift's `Hasher` is seeded per process, so it can
/// name nothing that must survive a restart (export ids, layer-stack signatures) and gives no
/// fixed checksum; this does both. Not for keys an attacker chooses to collide.
public struct FNV1a64: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func combine<Bytes: Sequence<UInt8>>(_ bytes: Bytes) {
        for byte in bytes {
            self.value = (self.value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
    }

    /// The hash of `bytes`.
    public static func hash<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> UInt64 {
        var hasher = FNV1a64()
        hasher.combine(bytes)
        return hasher.value
    }
}

/// FNV-1a, 32 bit: a cheap checksum of a few hundred bytes.
public enum FNV1a32 {
    public static func hash<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> UInt32 {
        var value: UInt32 = 0x811c_9dc5
        for byte in bytes {
            value = (value ^ UInt32(byte)) &* 0x0100_0193
        }
        return value
    }
}
