// READDIR cookies (Docs/SEMANTICS.md, Identity): a stable 63-bit hash of the name, so "resume after c" needs no server state and means
// the same after other clients' changes and after a restart. RFC 1813 §3.3.16: a server whose cookies are always
// valid may return a zero cookieverf, so `ListingPage.cookieVerifier` is always 0 and `badCookie` is never thrown
// for a cookie we can serve: any cookie resumes at the first name hashing above it.

enum Cookies {
    /// FNV-1a 64 of the name, masked to 63 bits, never 0 (0 means "from the start").
    static func hash(_ name: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        h &= 0x7fff_ffff_ffff_ffff
        return h == 0 ? 1 : h
    }

    /// Sorts by (hash, name) and assigns cookies; on a collision the later name takes the next free value (the
    /// tie-break is deterministic, so it survives restarts as long as the colliding names stay).
    static func assign(_ items: [(name: [UInt8], fileid: UInt64)]) -> [ListingEntry] {
        let keyed = items.map { (hash: Self.hash($0.name), name: $0.name, fileid: $0.fileid) }
            .sorted { a, b in a.hash != b.hash ? a.hash < b.hash : a.name.lexicographicallyPrecedes(b.name) }
        var out: [ListingEntry] = []
        out.reserveCapacity(keyed.count)
        var prev: UInt64 = 0
        for k in keyed {
            let c = max(k.hash, prev &+ 1)
            out.append(ListingEntry(name: k.name, fileid: k.fileid, cookie: c))
            prev = c
        }
        return out
    }
}
