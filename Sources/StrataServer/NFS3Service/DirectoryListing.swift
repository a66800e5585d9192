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
    /// Handle and attributes (READDIRPLUS), when the caller may search the directory.
    var object: FoundObject?
}

/// A page of a listing: the entries, whether they reach the end of the directory, the
/// directory's attributes and the union's cookie verifier.
struct DirectoryListing {
    var entries: [DirectoryListingEntry]
    var isComplete: Bool
    var dirAttributes: Attributes
    var verifier: UInt64
}

extension ExportCall {
    /// The names of `dir` after the wire `cookie`: ".", ".." (when not yet passed) and the
    /// union's merged listing for as long as `wants(nameLength)` answers true, from one union
    /// call. `withObjects` asks each name's handle and attributes (READDIRPLUS).
    func listing(
        _ dir: ObjectHandle, after cookie: UInt64, withObjects: Bool, while wants: (_ nameLength: Int) -> Bool
    ) throws(UnionError) -> DirectoryListing {
        // The union checks read permission on the directory before anything is listed, so "."
        // and ".." are not given to a caller who may not list the directory.
        let page = try self.namespace.listDirectory(
            dir, after: DirectoryCookies.union(fromWire: cookie), withObjects: withObjects,
            withParent: cookie < DirectoryCookies.afterDotDot, as: self.credentials, while: wants)
        let dirAttributes = page.directory.attributes
        var entries: [DirectoryListingEntry] = []
        entries.reserveCapacity(page.entries.count + 2)
        if cookie < DirectoryCookies.afterDot {
            entries.append(
                DirectoryListingEntry(
                    kind: .dot, name: [0x2E], fileid: dirAttributes.fileid, cookie: DirectoryCookies.afterDot,
                    object: withObjects ? page.directory : nil))
        }
        if cookie < DirectoryCookies.afterDotDot {
            // The parent needs search permission on the directory; without it (a readable but
            // not searchable directory) ".." shows the directory's own fileid and no handle.
            entries.append(
                DirectoryListingEntry(
                    kind: .dotDot, name: [0x2E, 0x2E], fileid: page.parent?.attributes.fileid ?? dirAttributes.fileid,
                    cookie: DirectoryCookies.afterDotDot, object: withObjects ? page.parent : nil))
        }
        for entry in page.entries {
            entries.append(
                DirectoryListingEntry(
                    kind: .member, name: entry.name, fileid: entry.fileid,
                    cookie: DirectoryCookies.wire(fromUnion: entry.cookie), object: entry.object))
        }
        return DirectoryListing(
            entries: entries, isComplete: page.isComplete, dirAttributes: dirAttributes, verifier: 0)
    }
}
