import Foundation
import Testing

@testable import Union

/// Keyed READDIR cookies and what a collision may do to a listing in progress.
@Suite struct CookieTests {
    /// The reference vectors of SipHash-2-4 (key 00..0f, messages 00, 00 01, ...; from the SipHash paper's code).
    @Test func sipHashMatchesTheReferenceVectors() {
        let key = CookieKey(k0: 0x0706_0504_0302_0100, k1: 0x0f0e_0d0c_0b0a_0908)
        let message = (0..<64).map { UInt8($0) }
        #expect(SipHash24.hash([], key) == 0x726f_db47_dd0e_0e31)
        #expect(SipHash24.hash(Array(message[0..<1]), key) == 0x74f8_39c5_93dc_67fd)
        #expect(SipHash24.hash(Array(message[0..<15]), key) == 0xa129_ca61_49be_45e5)
        #expect(SipHash24.hash(Array(message[0..<63]), key) == 0x958a_324c_eb06_4572)
    }

    /// With 1- to 4-bit slots nearly every name collides. For every listing, every page boundary (any cookie a
    /// client may hold) and every name removed or added between two pages: every other name not yet listed is
    /// listed on resume (none vanishes), each once. Sets where two names share the slot and the collision value too
    /// (the documented exception) are left out, and must stay rare.
    @Test(arguments: [1, 2, 4])
    func changingOneNameNeverHidesAnother(slotBits: Int) {
        let key = CookieKey.random()
        func assign(_ names: Set<[UInt8]>) -> [ListingEntry] {
            Cookies.assign(names.enumerated().map { ($1, UInt64($0)) }, key: key, slotBits: slotBits)
        }
        func hasDoubleCollision(_ names: Set<[UInt8]>) -> Bool {
            let full = names.map { Cookies.slot($0, key, bits: slotBits) | Cookies.collisionCookie($0, key) }
            return Set(full).count != full.count
        }
        var checked = 0, skipped = 0
        for round in 0..<40 {
            let count = 2 + round % 12
            let names = Set((0..<count).map { _ in b("n\(UInt32.random(in: 0...99_999))") })
            let added = b("added\(round)")
            let before = assign(names)
            #expect(before.map(\.cookie) == before.map(\.cookie).sorted())
            #expect(Set(before.map(\.cookie)).count == before.count)
            for (i, held) in before.enumerated() {
                let sent = Set(before[...i].map(\.name))
                for after in names.map({ names.subtracting([$0]) }) + [names.union([added])] {
                    if hasDoubleCollision(names.union(after)) {
                        skipped += 1
                        continue
                    }
                    checked += 1
                    let resumed = assign(after).filter { $0.cookie > held.cookie }.map(\.name)
                    let due = after.subtracting(sent).subtracting([added])
                    #expect(due.isSubset(of: Set(resumed)), "slot bits \(slotBits), names \(names.count)")
                    #expect(Set(resumed).count == resumed.count)
                }
            }
        }
        #expect(checked > 1000 && skipped * 20 < checked)
    }

    @Test func collisionCookiesStayInTheirSlotAndBelowTheAloneValue() {
        let key = CookieKey(k0: 42, k1: 7)
        let entries = Cookies.assign((0..<50).map { (b("f\($0)"), UInt64($0)) }, key: key, slotBits: 1)
        for e in entries {
            #expect(e.cookie & ~0xffff == Cookies.slot(e.name, key, bits: 1))
            #expect(e.cookie & 0xffff != 0 && e.cookie & 0xffff < Cookies.alone)
        }
        let alone = Cookies.assign([(b("only"), 1)], key: key)
        #expect(alone[0].cookie == Cookies.slot(b("only"), key) | Cookies.alone && alone[0].cookie < 1 << 63)
    }

    /// The key is the namespace's own: kept across a reopen (cookies survive a restart), different in another one.
    @Test func keyIsKeptInTheSidecar() throws {
        let f = Fixture()
        for i in 0..<20 { f.file(f.lower(0) + "/d/f\(i)") }
        let u = try f.open()
        let first = try u.readdir(u.h("d"), after: 0, as: root).entries
        let key = u.cookieKey
        u.close()
        let again = try f.open()
        #expect(again.cookieKey == key)
        #expect(try again.readdir(again.h("d"), after: 0, as: root).entries.map(\.cookie) == first.map(\.cookie))
        again.close()
        let g = Fixture()
        for i in 0..<20 { g.file(g.lower(0) + "/d/f\(i)") }
        let other = try g.open()
        defer { other.close() }
        #expect(other.cookieKey != key)
        #expect(try other.readdir(other.h("d"), after: 0, as: root).entries.map(\.cookie) != first.map(\.cookie))
    }
}
