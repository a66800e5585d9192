import NFS3
import Union

extension NFS3Service {
    /// READDIRPLUS (RFC 1813 §3.3.17). `maxcount` bounds the whole reply exactly, as READDIR's
    /// count; `dircount` bounds the directory information (each entry's value-follows word,
    /// fileid, name and cookie) of all entries but the first, so a client that sends a small
    /// or zero dircount still gets one entry per call rather than NFS3ERR_TOOSMALL, which is
    /// reserved for a maxcount too small for any entry.
    ///
    /// The first entry may also be sent without its attributes and handle, and the reply
    /// without the directory's attributes, to fit a small maxcount (all are optional in the
    /// RFC); later entries are sent whole or not at all.
    func readdirplus(_ args: ReadDirPlus3Args, _ call: ExportCall, _ dir: ObjectHandle) -> ReadDirPlus3Res {
        let maxcount = min(Int(args.maxcount), self.limits.maxReaddirReplyBytes)
        let dircount = Int(args.dircount)
        do {
            // One union call gives the page with every entry's handle and attributes. It is asked
            // for the entries that fit whole (an upper bound: an entry without handle and
            // attributes is smaller); the exact fit is chosen below.
            let wholeExtra = 4 + FileAttributes3.encodedSize + 4 + xdrOpaqueSize(ServerFileHandle.encodedBytes)
            var size = 4 + ReadDirPlus3ResOK.emptyEncodedSize(dirAttributes: .absent)
            var directoryBytes = 0
            var isFirst = args.cookie >= DirectoryCookies.afterDotDot
            if args.cookie < DirectoryCookies.afterDot {
                size += EntryPlus3.directoryInfoSize(nameLength: 1) + wholeExtra
                directoryBytes += EntryPlus3.directoryInfoSize(nameLength: 1)
            }
            if args.cookie < DirectoryCookies.afterDotDot {
                size += EntryPlus3.directoryInfoSize(nameLength: 2) + wholeExtra
                directoryBytes += EntryPlus3.directoryInfoSize(nameLength: 2)
            }
            let listing = try call.listing(dir, after: args.cookie, withObjects: true) { nameLength in
                let info = EntryPlus3.directoryInfoSize(nameLength: nameLength)
                defer { isFirst = false }
                if !isFirst && (directoryBytes + info > dircount || size + info + wholeExtra > maxcount) {
                    return false
                }
                directoryBytes += info
                size += info + wholeExtra
                return true
            }
            let verifier = CookieVerifier3(rawValue: listing.verifier)
            let fullDirAttributes = PostOpAttr(FileAttributes3(listing.dirAttributes))

            func complete(_ entry: DirectoryListingEntry) -> EntryPlus3 {
                EntryPlus3(
                    fileid: entry.fileid, name: entry.name, cookie: entry.cookie,
                    nameAttributes: PostOpAttr(entry.object.map { FileAttributes3($0.attributes) }),
                    nameHandle: PostOpFileHandle3(entry.object.map { call.fileHandle3($0.handle) }))
            }

            guard let first = listing.entries.first else {
                // Nothing after the cookie: an empty list with eof, if even that fits.
                for dirAttributes in [fullDirAttributes, .absent]
                where 4 + ReadDirPlus3ResOK.emptyEncodedSize(dirAttributes: dirAttributes) <= maxcount {
                    return .ok(
                        ReadDirPlus3ResOK(
                            dirAttributes: dirAttributes, cookieverf: verifier, entries: [], eof: listing.isComplete))
                }
                return .fail(.toosmall, ReadDirPlus3ResFail(dirAttributes: fullDirAttributes))
            }

            // The first entry: whole with directory attributes, whole without them, or bare.
            let firstWhole = complete(first)
            var bare = firstWhole
            bare.nameAttributes = .absent
            bare.nameHandle = .absent
            var chosen: (PostOpAttr, EntryPlus3, Int)?
            for (dirAttributes, entry) in [(fullDirAttributes, firstWhole), (.absent, firstWhole), (.absent, bare)] {
                let size = 4 + ReadDirPlus3ResOK.emptyEncodedSize(dirAttributes: dirAttributes) + entry.encodedSize
                if size <= maxcount {
                    chosen = (dirAttributes, entry, size)
                    break
                }
            }
            guard let (dirAttributes, firstEntry, firstSize) = chosen else {
                call.logger.debug("READDIRPLUS maxcount too small", metadata: ["maxcount": "\(maxcount)"])
                return .fail(.toosmall, ReadDirPlus3ResFail(dirAttributes: fullDirAttributes))
            }
            var entries = [firstEntry]
            entries.reserveCapacity(listing.entries.count)
            var replyBytes = firstSize
            var infoBytes = EntryPlus3.directoryInfoSize(nameLength: first.name.count)
            for entry in listing.entries.dropFirst() {
                let infoSize = EntryPlus3.directoryInfoSize(nameLength: entry.name.count)
                guard infoBytes + infoSize <= dircount else { break }
                let whole = complete(entry)
                guard replyBytes + whole.encodedSize <= maxcount else { break }
                replyBytes += whole.encodedSize
                infoBytes += infoSize
                entries.append(whole)
            }
            let isEOF = listing.isComplete && entries.count == listing.entries.count
            return .ok(
                ReadDirPlus3ResOK(dirAttributes: dirAttributes, cookieverf: verifier, entries: entries, eof: isEOF))
        } catch {
            return .fail(call.status(error), ReadDirPlus3ResFail(dirAttributes: call.postOp(dir)))
        }
    }
}
