// File handles must not be forgeable (a client that cannot search `secret/` must not reach `secret/file` by
// guessing its fileid). Every object handle carries a 64-bit tag: SipHash-2-4 of its fileid under a 128-bit key that
// is drawn at random when the namespace's sidecar is created and kept there, so handles stay valid across restarts
// and no client can compute the tag of an object it was never given. Like the generation number in a knfsd handle,
// but it needs no per-object state.

/// The secret that authenticates the object handles of one namespace.
struct HandleKey: Sendable, Equatable {
    var k0: UInt64
    var k1: UInt64
    /// fileids in `sharedRange` come from a store of lower identities shared by every client of one image
    /// (`SharedIdentities`): their tags are taken under this key combined with the shared store's, so that a handle
    /// stays this namespace's and also dies with that store (a store made anew hands the same numbers to other
    /// objects). Empty without a shared store.
    var sharedRange: Range<UInt64> = 0..<0
    var sharedK0: UInt64 = 0
    var sharedK1: UInt64 = 0

    init(k0: UInt64, k1: UInt64) {
        self.k0 = k0
        self.k1 = k1
    }

    static func random() -> HandleKey {
        HandleKey(k0: UInt64.random(in: .min ... .max), k1: UInt64.random(in: .min ... .max))
    }

    /// This key, with `shared`'s mixed in for the fileids of `range`.
    func sharing(_ shared: HandleKey, for range: Range<UInt64>) -> HandleKey {
        var key = self
        key.sharedRange = range
        key.sharedK0 = self.k0 ^ shared.k0
        key.sharedK1 = self.k1 ^ shared.k1
        return key
    }

    /// The tag of the handle of `fileid`: SipHash-2-4 of its 8 little-endian bytes (`SipHash24` of those bytes,
    /// without building them: one handle is tagged per reply entry).
    func tag(_ fileid: UInt64) -> UInt64 {
        if self.sharedRange.contains(fileid) { return Self.hash(word: fileid, k0: self.sharedK0, k1: self.sharedK1) }
        return Self.hash(word: fileid, k0: self.k0, k1: self.k1)
    }

    @inline(__always)
    private static func rounds(
        _ v0: inout UInt64, _ v1: inout UInt64, _ v2: inout UInt64, _ v3: inout UInt64, _ count: Int
    ) {
        for _ in 0..<count {
            v0 = v0 &+ v1
            v1 = (v1 << 13) | (v1 >> 51)
            v1 ^= v0
            v0 = (v0 << 32) | (v0 >> 32)
            v2 = v2 &+ v3
            v3 = (v3 << 16) | (v3 >> 48)
            v3 ^= v2
            v0 = v0 &+ v3
            v3 = (v3 << 21) | (v3 >> 43)
            v3 ^= v0
            v2 = v2 &+ v1
            v1 = (v1 << 17) | (v1 >> 47)
            v1 ^= v2
            v2 = (v2 << 32) | (v2 >> 32)
        }
    }

    /// SipHash-2-4 (Aumasson and Bernstein, 2012) of one 64-bit little-endian word, i.e. an 8-byte message.
    static func hash(word: UInt64, k0: UInt64, k1: UInt64) -> UInt64 {
        var v0 = k0 ^ 0x736f_6d65_7073_6575
        var v1 = k1 ^ 0x646f_7261_6e64_6f6d
        var v2 = k0 ^ 0x6c79_6765_6e65_7261
        var v3 = k1 ^ 0x7465_6462_7974_6573
        v3 ^= word
        Self.rounds(&v0, &v1, &v2, &v3, 2)
        v0 ^= word
        // Final block: no message bytes left, the length (8) in the top byte.
        let lastBlock: UInt64 = 8 << 56
        v3 ^= lastBlock
        Self.rounds(&v0, &v1, &v2, &v3, 2)
        v0 ^= lastBlock
        v2 ^= 0xff
        Self.rounds(&v0, &v1, &v2, &v3, 4)
        return v0 ^ v1 ^ v2 ^ v3
    }
}
