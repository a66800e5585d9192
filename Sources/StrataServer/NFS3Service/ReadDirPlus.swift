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
    func readdirplus(_ args: ReadDirPlus3Args, _ scope: NFS3Scope, _ dir: ObjectHandle) -> ReadDirPlus3Res {
        let maxcount = Int(args.maxcount)
        let dircount = Int(args.dircount)
        do {
            let limit = listingLimit(forReplyBytes: min(maxcount, max(dircount, Entry3.encodedSize(nameLength: 255))))
            let listing = try scope.listing(dir, after: args.cookie, limit: limit)
            let verifier = CookieVerifier3(rawValue: listing.verifier)
            let dirHandle = scope.fileHandle(dir)
            let fullDirAttributes = PostOpAttr(FileAttributes3(listing.dirAttributes))

            // Attributes and handles are looked up once per entry, and only for entries that
            // may still fit.
            func complete(_ entry: DirectoryListingEntry) -> EntryPlus3 {
                let found: (ObjectHandle, Attributes)?
                switch entry.kind {
                case .dot: found = (dir, listing.dirAttributes)
                case .dotDot: found = try? scope.namespace.lookupParent(dir, as: scope.credentials)
                case .member: found = try? scope.namespace.handle(forEntry: entry.name, in: dir)
                }
                return EntryPlus3(
                    fileid: entry.fileid, name: entry.name, cookie: entry.cookie,
                    nameAttributes: PostOpAttr(found.map { FileAttributes3($0.1) }),
                    nameHandle: PostOpFileHandle3(
                        found.map { entry.kind == .dot ? dirHandle : scope.fileHandle($0.0) }))
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
                scope.logger.debug("READDIRPLUS maxcount too small", metadata: ["maxcount": "\(maxcount)"])
                return .fail(.toosmall, ReadDirPlus3ResFail(dirAttributes: fullDirAttributes))
            }
            var entries = [firstEntry]
            var size = firstSize
            var directoryBytes = EntryPlus3.directoryInfoSize(nameLength: first.name.count)
            for entry in listing.entries.dropFirst() {
                let infoSize = EntryPlus3.directoryInfoSize(nameLength: entry.name.count)
                guard directoryBytes + infoSize <= dircount else { break }
                // Cheap bound before looking the entry up: its bare size must fit.
                guard size + infoSize + 8 <= maxcount else { break }
                let whole = complete(entry)
                guard size + whole.encodedSize <= maxcount else { break }
                size += whole.encodedSize
                directoryBytes += infoSize
                entries.append(whole)
            }
            let isEOF = listing.isComplete && entries.count == listing.entries.count
            return .ok(
                ReadDirPlus3ResOK(dirAttributes: dirAttributes, cookieverf: verifier, entries: entries, eof: isEOF))
        } catch {
            return .fail(scope.status(error), ReadDirPlus3ResFail(dirAttributes: scope.postOp(dir)))
        }
    }
}
