import Foundation
import Glibc
import Testing

@testable import Union

@Suite struct ListingTests {
    @Test func eachNameOnceAcrossOverlappingLayers() throws {
        let f = Fixture()
        for i in 0..<3 {
            for n in ["common", "l\(i)", "d"] { f.file(f.lower(i) + "/dir/\(n)", "\(i)") }
            f.file(f.lower(i) + "/dir/.wh.gone\(i)")
        }
        f.file(f.lower(2) + "/dir/gone0", "hidden by the OCI whiteout in lower0")
        f.overlayWhiteout(f.lower(1) + "/dir/l2")
        let u = try f.open(lowers: 3)
        try u.mkfile("dir", "up", "u")
        let page = try u.readdir(u.h("dir"), after: 0, as: root)
        let names = page.entries.map { String(decoding: $0.name, as: UTF8.self) }
        #expect(names.sorted() == ["common", "d", "l0", "l1", "up"])
        #expect(Set(page.entries.map(\.cookie)).count == page.entries.count)
        #expect(page.entries.map(\.cookie) == page.entries.map(\.cookie).sorted())
        #expect(page.entries.allSatisfy { $0.cookie != 0 && $0.cookie < 1 << 63 })
        // fileids in the listing match lookup.
        for e in page.entries {
            #expect(try u.lookup(u.h("dir"), e.name, as: root).1.fileid == e.fileid)
        }
    }

    @Test func resumeByCookieAfterChangesBetweenPages() throws {
        let f = Fixture()
        for i in 0..<100 { f.file(f.lower(0) + "/big/f\(i)", "") }
        let u = try f.open()
        let dir = try u.h("big")
        var seen: [String] = []
        var cookie: UInt64 = 0
        var removed: Set<String> = []
        var added: Set<String> = []
        var round = 0
        while true {
            let page = try u.readdir(dir, after: cookie, limit: 7, as: root)
            seen += page.entries.map { String(decoding: $0.name, as: UTF8.self) }
            if let last = page.entries.last { cookie = last.cookie }
            if page.isComplete { break }
            // Other clients change the directory between pages.
            let victim = "f\(round * 3)"
            if !seen.contains(victim), (try? u.remove(in: dir, b(victim), as: root)) != nil { removed.insert(victim) }
            try u.mkfile("big", "new\(round)")
            added.insert("new\(round)")
            round += 1
        }
        // Every entry that did not change is returned exactly once.
        let unchanged = Set((0..<100).map { "f\($0)" }).subtracting(removed)
        for n in unchanged { #expect(seen.filter { $0 == n }.count == 1, "\(n)") }
        #expect(Set(seen).isDisjoint(with: removed))
        #expect(seen.count == Set(seen).count)
    }

    @Test func cookiesSurviveReopen() throws {
        let f = Fixture()
        for i in 0..<20 { f.file(f.lower(0) + "/d/n\(i)", "") }
        var u = try f.open()
        let first = try u.readdir(u.h("d"), after: 0, limit: 5, as: root)
        let resume = try #require(first.entries.last).cookie
        let rest1 = try u.readdir(u.h("d"), after: resume, as: root).entries
        u.close()
        u = try f.open()
        let rest2 = try u.readdir(u.h("d"), after: resume, as: root).entries
        #expect(rest1 == rest2)
        #expect(rest1.count == 15)
        // A cookie that is no longer an entry's (its name was removed) still resumes at the right place.
        try u.remove(in: u.h("d"), first.entries[4].name, as: root)
        let rest3 = try u.readdir(u.h("d"), after: resume, as: root).entries
        #expect(rest3 == rest2)
        // Any cookie is served: past the end is an empty, complete page.
        let end = try u.readdir(u.h("d"), after: UInt64.max >> 1, as: root)
        #expect(end.entries.isEmpty && end.isComplete)
    }

    @Test func cookieHashIsStableAndTieBroken() {
        let key = CookieKey(k0: 1, k1: 2)
        #expect(Cookies.slot(b("a"), key) == Cookies.slot(b("a"), key))
        #expect(Cookies.slot(b("a"), key) != Cookies.slot(b("b"), key))
        #expect(Cookies.slot(b("a"), key) != Cookies.slot(b("a"), CookieKey(k0: 1, k1: 3)))
        let entries = Cookies.assign([(b("x"), 1), (b("x"), 2)], key: key)
        #expect(entries[0].cookie + 1 == entries[1].cookie)
    }

    @Test func listingCacheIsInvalidatedOnChange() throws {
        let f = Fixture()
        f.file(f.lower(0) + "/d/a", "")
        let u = try f.open()
        #expect(try u.names("d") == ["a"])
        try u.mkfile("d", "b")
        #expect(try u.names("d") == ["a", "b"])
        try u.rename(from: u.h("d"), b("a"), to: u.rootHandle, b("a2"), as: root)
        #expect(try u.names("d") == ["b"])
        #expect(try u.names("") == ["a2", "d"])
        _ = try u.link(u.h("a2"), in: u.h("d"), b("hard"), as: root)
        #expect(try u.names("d") == ["b", "hard"])
    }
}

@Suite struct MountPointListingTests {
    @Test func listingFileidOfMountPointMatchesLookup() throws {
        let f = Fixture()
        f.mkdir(f.lower(0) + "/mnt")
        f.file(f.base + "/elsewhere/inside", "i")
        // make test runs as root; a failed mount is a failure, not a silent pass.
        try #require(
            mount(f.base + "/elsewhere", f.lower(0) + "/mnt", nil, UInt(MS_BIND), nil) == 0, "bind mount needs root")
        defer { umount(f.lower(0) + "/mnt") }
        let u = try f.open()
        let entry = try #require(u.readdir(u.rootHandle, after: 0, as: root).entries.first { $0.name == b("mnt") })
        #expect(entry.fileid == (try u.walk("mnt").1.fileid))
        #expect(try u.contents("mnt/inside") == "i")
        u.close()
    }
}
