import NFS3
import Union

// READDIR and READDIRPLUS cookies.
//
// The union's merged listing gives every name a cookie that is a stable 63-bit hash of the name
// (never 0), so "resume after c" means the same after other clients' changes and after a
// restart, and every cookie can be served: we never answer NFS3ERR_BAD_COOKIE, and since the
// union's cookies are always valid its cookie verifier is 0, which RFC 1813 §3.3.16 allows
// ("the server may return a zero cookieverf ... if it can always resume"). The client's
// cookieverf is therefore not checked.
//
// Like Linux knfsd we list "." and ".." first. They take wire cookies 1 and 2, and a union cookie
// c travels as c + 2: the union's hashes may be 1 or 2, and shifting them is the only way that
// can never collide. Union cookies stay below 2^63 + (number of colliding names), so c + 2
// never overflows 64 bits.
enum DirectoryCookies {
    static let afterDot: UInt64 = 1
    static let afterDotDot: UInt64 = 2
    static let unionOffset: UInt64 = 2

    static func wire(fromUnion cookie: UInt64) -> UInt64 { cookie &+ Self.unionOffset }

    /// The union cookie to resume after, for a wire cookie past "." and "..".
    static func union(fromWire cookie: UInt64) -> UInt64 {
        cookie > Self.afterDotDot ? cookie - Self.unionOffset : 0
    }
}

/// One name of a listing as the client sees it.
struct DirectoryListingEntry {
    enum Kind { case dot, dotDot, member }
    var kind: Kind
    var name: [UInt8]
    var fileid: UInt64
    /// The wire cookie.
    var cookie: UInt64
}

/// A page of a listing: the entries, whether they reach the end of the directory, the
/// directory's attributes and the union's cookie verifier.
struct DirectoryListing {
    var entries: [DirectoryListingEntry]
    var isComplete: Bool
    var dirAttributes: Attributes
    var verifier: UInt64
}

extension NFS3Scope {
    /// The names of `dir` after the wire `cookie`: ".", ".." (when not yet passed) and up to
    /// `limit` names of the union's merged listing.
    /// - Returns: the entries, whether they reach the end of the directory, the directory's
    ///   attributes and the union's cookie verifier.
    func listing(
        _ dir: ObjectHandle, after cookie: UInt64, limit: Int
    ) throws(UnionError) -> DirectoryListing {
        // The union checks read permission on the directory; do it first so "." and ".." are
        // not given to a caller who may not list the directory.
        let page = try self.namespace.readdir(
            dir, after: DirectoryCookies.union(fromWire: cookie), limit: max(1, limit), as: self.credentials)
        let dirAttributes = try self.namespace.getattr(dir)
        var entries: [DirectoryListingEntry] = []
        entries.reserveCapacity(page.entries.count + 2)
        if cookie < DirectoryCookies.afterDot {
            entries.append(
                DirectoryListingEntry(
                    kind: .dot, name: [0x2E], fileid: dirAttributes.fileid, cookie: DirectoryCookies.afterDot))
        }
        if cookie < DirectoryCookies.afterDotDot {
            // The parent's fileid needs search permission on the directory; without it (a
            // readable but not searchable directory) fall back to the directory's own.
            let parent = try? self.namespace.lookupParent(dir, as: self.credentials)
            let parentFileid = parent?.1.fileid ?? dirAttributes.fileid
            entries.append(
                DirectoryListingEntry(
                    kind: .dotDot, name: [0x2E, 0x2E], fileid: parentFileid, cookie: DirectoryCookies.afterDotDot))
        }
        for entry in page.entries {
            entries.append(
                DirectoryListingEntry(
                    kind: .member, name: entry.name, fileid: entry.fileid,
                    cookie: DirectoryCookies.wire(fromUnion: entry.cookie)))
        }
        return DirectoryListing(
            entries: entries, isComplete: page.isComplete, dirAttributes: dirAttributes, verifier: page.cookieVerifier)
    }
}

/// How many entries to ask the union for, given a reply budget: every entry takes at least
/// 28 bytes (value-follows, fileid, a 1–4 byte name, cookie), so more cannot fit. Bounded so a
/// huge count does not copy a huge listing.
func listingLimit(forReplyBytes bytes: Int) -> Int {
    min(max(bytes / Entry3.encodedSize(nameLength: 1), 1), 65_536)
}
