import NFS3
import Union

extension NFS3Service {
    /// READDIR (RFC 1813 §3.3.16). `count` bounds the whole reply (status, attributes,
    /// verifier, entries and the list's XDR overhead): we add up exact encoded sizes and never
    /// exceed it, nor `maxReaddirReplyBytes` whatever the client asks. If not even one entry
    /// fits, the directory attributes are dropped to make room; if it still does not fit the
    /// answer is NFS3ERR_TOOSMALL.
    func readdir(_ args: ReadDir3Args, _ call: ExportCall, _ dir: ObjectHandle) -> ReadDir3Res {
        let count = min(Int(args.count), self.limits.maxReaddirReplyBytes)
        do {
            // Ask the union for the names that fit without directory attributes (an upper
            // bound); the exact fit is chosen below.
            var budget = 4 + ReadDir3ResOK.emptyEncodedSize(dirAttributes: .absent)
            if args.cookie < DirectoryCookies.afterDot { budget += Entry3.encodedSize(nameLength: 1) }
            if args.cookie < DirectoryCookies.afterDotDot { budget += Entry3.encodedSize(nameLength: 2) }
            let listing = try call.listing(dir, after: args.cookie, withObjects: false) { nameLength in
                budget += Entry3.encodedSize(nameLength: nameLength)
                return budget <= count
            }
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
            call.logger.debug("READDIR count too small", metadata: ["count": "\(count)"])
            return .fail(.toosmall, ReadDir3ResFail(dirAttributes: PostOpAttr(FileAttributes3(listing.dirAttributes))))
        } catch {
            return .fail(call.status(error), ReadDir3ResFail(dirAttributes: call.postOp(dir)))
        }
    }
}
