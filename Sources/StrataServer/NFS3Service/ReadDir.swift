import NFS3
import Union

extension NFS3Service {
    /// READDIR (RFC 1813 §3.3.16). `count` bounds the whole reply (status, attributes,
    /// verifier, entries and the list's XDR overhead): we add up exact encoded sizes and never
    /// exceed it. If not even one entry fits, the directory attributes are dropped to make room;
    /// if it still does not fit the answer is NFS3ERR_TOOSMALL.
    func readdir(_ args: ReadDir3Args, _ scope: NFS3Scope, _ dir: ObjectHandle) -> ReadDir3Res {
        let count = Int(args.count)
        do {
            let listing = try scope.listing(dir, after: args.cookie, limit: listingLimit(forReplyBytes: count))
            let verifier = CookieVerifier3(rawValue: listing.verifier)
            for dirAttributes in [PostOpAttr(FileAttributes3(listing.dirAttributes)), .absent] {
                var size = 4 + ReadDir3ResOK.emptyEncodedSize(dirAttributes: dirAttributes)
                guard size <= count else { continue }
                var entries: [Entry3] = []
                for entry in listing.entries {
                    let entrySize = Entry3.encodedSize(nameLength: entry.name.count)
                    guard size + entrySize <= count else { break }
                    size += entrySize
                    entries.append(Entry3(fileid: entry.fileid, name: entry.name, cookie: entry.cookie))
                }
                let isEOF = listing.isComplete && entries.count == listing.entries.count
                guard !entries.isEmpty || isEOF else { continue }
                return .ok(
                    ReadDir3ResOK(dirAttributes: dirAttributes, cookieverf: verifier, entries: entries, eof: isEOF))
            }
            scope.logger.debug("READDIR count too small", metadata: ["count": "\(count)"])
            return .fail(.toosmall, ReadDir3ResFail(dirAttributes: scope.postOp(dir)))
        } catch {
            return .fail(scope.status(error), ReadDir3ResFail(dirAttributes: scope.postOp(dir)))
        }
    }
}
