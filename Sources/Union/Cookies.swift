import Foundation
import GRDB

// READDIR cookies (Docs/SEMANTICS.md, Identity): a stable hash of the name, so "resume after c" needs no server state and means the
// same after other clients' changes and after a restart. RFC 1813 §3.3.16: a server whose cookies are always valid
// may return a zero cookieverf, so the union has no verifier and no "bad cookie" error: any cookie resumes at the
// first name whose cookie is above it.
//
// The hash is keyed (SipHash-2-4 with a random 128-bit key kept in the namespace's sidecar), so nobody can compute
// colliding names. A cookie is 63 bits: 47 bits of hash (the name's slot), then 16 bits that order the names sharing
// a slot. A name alone in its slot takes the last value (0xffff); names that share a slot take values below it chosen
// by a second keyed hash of each name alone (`collisionCookie`). Removing one name of a colliding pair therefore only
// ever moves the other one later (to 0xffff), never back over a cookie a client already holds: it is never skipped.

/// The secret of a namespace's cookies.
struct CookieKey: Sendable, Equatable {
    var k0: UInt64
    var k1: UInt64

    static func random() -> CookieKey { CookieKey(k0: .random(in: .min ... .max), k1: .random(in: .min ... .max)) }

    /// The namespace's key, made on first use and kept in `meta` (`cookieKey0`, `cookieKey1`). Read first: a
    /// sidecar made by `UnionNamespace.createUpper` has it already, and a durable write per open would cost a flush.
    static func load(_ sidecar: Sidecar) throws(UnionError) -> CookieKey {
        if let known = try sidecar.read("read the cookie key", Self.fetch) { return known }
        return try sidecar.write("make the cookie key") { db -> CookieKey in
            if let known = try Self.fetch(db) { return known }
            let key = CookieKey.random()
            try key.store(db)
            return key
        }
    }

    private static func fetch(_ db: Database) throws -> CookieKey? {
        let rows = try MetaRecord.fetchAll(db, keys: ["cookieKey0", "cookieKey1"])
        guard let first = rows.first(where: { $0.key == "cookieKey0" }),
            let second = rows.first(where: { $0.key == "cookieKey1" })
        else { return nil }
        return CookieKey(k0: first.value, k1: second.value)
    }

    func store(_ db: Database) throws {
        try MetaRecord(key: "cookieKey0", value: self.k0).save(db)
        try MetaRecord(key: "cookieKey1", value: self.k1).save(db)
    }
}

enum Cookies {
    /// Low 16 bits of a name alone in its slot (the largest: see above).
    static let alone: UInt64 = 0xffff
    static let collisionBits: UInt64 = 16
    /// Bits of hash in a slot; tests lower it to force collisions.
    static let slotBits = 47

    /// The name's slot: the top `bits` of its keyed hash, shifted over the 16 collision bits.
    static func slot(_ name: [UInt8], _ key: CookieKey, bits: Int = Cookies.slotBits) -> UInt64 {
        (SipHash24.hash(name, key) >> UInt64(64 - bits)) << Self.collisionBits
    }

    /// A colliding name's low 16 bits, 1...0xfffe, from a second keyed hash of the name alone.
    static func collisionCookie(_ name: [UInt8], _ key: CookieKey) -> UInt64 {
        SipHash24.hash(name, CookieKey(k0: key.k0 ^ 0x636f_6c6c_6973_696f, k1: key.k1)) % 0xfffe + 1
    }

    /// Sorts by cookie and assigns them. Names that share the slot and the collision value too (1 colliding pair in
    /// 65,534; a slot collision itself takes millions of names) take the next free value in name order:
    /// deterministic while those names stay, though removing the first one moves the second back.
    static func assign(
        _ items: [(name: [UInt8], fileid: UInt64)], key: CookieKey, slotBits: Int = Cookies.slotBits
    ) -> [ListingEntry] {
        Self.order(items.map(\.name), key: key, slotBits: slotBits).map {
            ListingEntry(name: items[$0.index].name, fileid: items[$0.index].fileid, cookie: $0.cookie)
        }
    }

    /// `assign` as positions in `names`: each name's index and cookie, in cookie order. Sorted by slot, so only the
    /// names of a shared slot (rare) need their collision value and a second sort.
    static func order(
        _ names: [[UInt8]], key: CookieKey, slotBits: Int = Cookies.slotBits
    ) -> [(index: Int, cookie: UInt64)] {
        var keyed = names.indices.map { (cookie: Self.slot(names[$0], key, bits: slotBits), index: $0) }
        func precedes(_ a: (cookie: UInt64, index: Int), _ b: (cookie: UInt64, index: Int)) -> Bool {
            a.cookie != b.cookie ? a.cookie < b.cookie : names[a.index].lexicographicallyPrecedes(names[b.index])
        }
        keyed.sort(by: precedes)
        var runStart = 0
        while runStart < keyed.count {
            var runEnd = runStart + 1
            while runEnd < keyed.count && keyed[runEnd].cookie == keyed[runStart].cookie { runEnd += 1 }
            if runEnd - runStart == 1 {
                keyed[runStart].cookie |= Self.alone
            } else {
                for position in runStart..<runEnd {
                    keyed[position].cookie |= Self.collisionCookie(names[keyed[position].index], key)
                }
                keyed[runStart..<runEnd].sort(by: precedes)
            }
            runStart = runEnd
        }
        var prev: UInt64 = 0
        return keyed.map { entry in
            let cookie = max(entry.cookie, prev &+ 1)
            prev = cookie
            return (entry.index, cookie)
        }
    }
}

/// SipHash-2-4 (Aumasson and Bernstein), 64-bit output.
enum SipHash24 {
    @inline(__always) static func rotl(_ x: UInt64, _ b: UInt64) -> UInt64 { (x << b) | (x >> (64 - b)) }

    static func hash(_ data: [UInt8], _ key: CookieKey) -> UInt64 {
        var v0: UInt64 = 0x736f_6d65_7073_6575 ^ key.k0
        var v1: UInt64 = 0x646f_7261_6e64_6f6d ^ key.k1
        var v2: UInt64 = 0x6c79_6765_6e65_7261 ^ key.k0
        var v3: UInt64 = 0x7465_6462_7974_6573 ^ key.k1
        @inline(__always) func round() {
            v0 = v0 &+ v1
            v1 = rotl(v1, 13)
            v1 ^= v0
            v0 = rotl(v0, 32)
            v2 = v2 &+ v3
            v3 = rotl(v3, 16)
            v3 ^= v2
            v0 = v0 &+ v3
            v3 = rotl(v3, 21)
            v3 ^= v0
            v2 = v2 &+ v1
            v1 = rotl(v1, 17)
            v1 ^= v2
            v2 = rotl(v2, 32)
        }
        let length = data.count
        let full = length & ~7
        var offset = 0
        while offset < full {
            var word: UInt64 = 0
            for byte in 0..<8 { word |= UInt64(data[offset + byte]) << UInt64(8 * byte) }
            v3 ^= word
            round()
            round()
            v0 ^= word
            offset += 8
        }
        var last = UInt64(length & 0xff) << 56
        for byte in 0..<(length - full) { last |= UInt64(data[full + byte]) << UInt64(8 * byte) }
        v3 ^= last
        round()
        round()
        v0 ^= last
        v2 ^= 0xff
        round()
        round()
        round()
        round()
        return v0 ^ v1 ^ v2 ^ v3
    }
}
