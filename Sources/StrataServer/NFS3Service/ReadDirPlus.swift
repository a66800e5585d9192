import NFS3
import NIOCore
import Union
import XDR

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
    ///
    /// The reply is encoded here, straight into the reply buffer (`ReadDirPlusEncoder`): a page
    /// is hundreds of entries, and building an `EntryPlus3` with its own handle array for each,
    /// then encoding them field by field through `ByteBuffer`, cost more than the listing.
    func readdirplus(_ args: ReadDirPlus3Args, _ call: ExportCall, _ dir: ObjectHandle) -> ByteBuffer {
        let maxcount = min(Int(args.maxcount), self.limits.maxReaddirReplyBytes)
        let dircount = Int(args.dircount)
        do {
            // One union call gives the page with every entry's handle and attributes. It is asked
            // for the entries that fit whole (an upper bound: an entry without handle and
            // attributes is smaller); the exact fit is chosen below.
            let wholeExtra = ReadDirPlusEncoder.objectBytes(whole: true)
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

            guard let first = listing.entries.first else {
                // Nothing after the cookie: an empty list with eof, if even that fits.
                for dirAttributes in [fullDirAttributes, .absent]
                where 4 + ReadDirPlus3ResOK.emptyEncodedSize(dirAttributes: dirAttributes) <= maxcount {
                    return NFS3Request.encoded(
                        ReadDirPlus3Res.ok(
                            ReadDirPlus3ResOK(
                                dirAttributes: dirAttributes, cookieverf: verifier, entries: [],
                                eof: listing.isComplete)))
                }
                return NFS3Request.encoded(
                    ReadDirPlus3Res.fail(.toosmall, ReadDirPlus3ResFail(dirAttributes: fullDirAttributes)))
            }

            // The first entry: whole with directory attributes, whole without them, or bare.
            let firstWhole = first.object != nil
            var chosen: (withDirAttributes: Bool, firstWhole: Bool, size: Int)?
            for (withDirAttributes, whole) in [(true, firstWhole), (false, firstWhole), (false, false)] {
                let size =
                    4
                    + ReadDirPlus3ResOK.emptyEncodedSize(dirAttributes: withDirAttributes ? fullDirAttributes : .absent)
                    + EntryPlus3.directoryInfoSize(nameLength: first.name.count)
                    + ReadDirPlusEncoder.objectBytes(whole: whole)
                if size <= maxcount {
                    chosen = (withDirAttributes, whole, size)
                    break
                }
            }
            guard let chosen else {
                call.logger.debug("READDIRPLUS maxcount too small", metadata: ["maxcount": "\(maxcount)"])
                return NFS3Request.encoded(
                    ReadDirPlus3Res.fail(.toosmall, ReadDirPlus3ResFail(dirAttributes: fullDirAttributes)))
            }
            var count = 1
            var replyBytes = chosen.size
            var infoBytes = EntryPlus3.directoryInfoSize(nameLength: first.name.count)
            let entries = listing.entries
            while count < entries.count {
                let entry = entries[count]
                let infoSize = EntryPlus3.directoryInfoSize(nameLength: entry.name.count)
                guard infoBytes + infoSize <= dircount else { break }
                let entrySize = infoSize + ReadDirPlusEncoder.objectBytes(whole: entry.object != nil)
                guard replyBytes + entrySize <= maxcount else { break }
                replyBytes += entrySize
                infoBytes += infoSize
                count += 1
            }
            let isEOF = listing.isComplete && count == entries.count
            let encoder = ReadDirPlusEncoder(exportID: call.exportID, clientTag: call.clientTag)
            return encoder.encode(
                replyBytes: replyBytes, dirAttributes: chosen.withDirAttributes ? listing.dirAttributes : nil,
                verifier: verifier, entries: entries[0..<count], firstWhole: chosen.firstWhole, eof: isEOF)
        } catch {
            return NFS3Request.encoded(
                ReadDirPlus3Res.fail(call.status(error), ReadDirPlus3ResFail(dirAttributes: call.postOp(dir))))
        }
    }
}

/// Writes a READDIRPLUS3res with status NFS3_OK into one buffer of its exact size, with one
/// bounds check for the whole reply; the bytes are those `ReadDirPlus3Res.encode` gives for the
/// same values (tested against it).
struct ReadDirPlusEncoder {
    let exportID: UInt32
    let clientTag: UInt32

    /// The bytes an entry adds after its directory information: post_op_attr and post_op_fh3,
    /// both present or both absent.
    static func objectBytes(whole: Bool) -> Int {
        whole ? 4 + FileAttributes3.encodedSize + 4 + xdrOpaqueSize(ServerFileHandle.encodedBytes) : 4 + 4
    }

    /// - Parameters:
    ///   - replyBytes: the exact size of the result (status included), as the caller counted it.
    ///   - firstWhole: whether the first entry carries its attributes and handle (it has an
    ///     object); later entries carry them whenever they have one.
    func encode(
        replyBytes: Int, dirAttributes: Attributes?, verifier: CookieVerifier3,
        entries: ArraySlice<DirectoryListingEntry>, firstWhole: Bool, eof: Bool
    ) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: replyBytes)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: replyBytes) { raw in
            var writer = XDRRawWriter(raw)
            writer.u32(NFSStatus3.ok.rawValue)
            if let dirAttributes {
                writer.u32(1)
                writer.attributes(dirAttributes)
            } else {
                writer.u32(0)
            }
            writer.u64(verifier.rawValue)
            var isFirst = true
            for entry in entries {
                writer.u32(1)
                writer.u64(entry.fileid)
                writer.opaque(entry.name)
                writer.u64(entry.cookie)
                if let object = entry.object, firstWhole || !isFirst {
                    writer.u32(1)
                    writer.attributes(object.attributes)
                    writer.u32(1)
                    writer.u32(UInt32(ServerFileHandle.encodedBytes))
                    writer.handle(
                        ServerFileHandle(exportID: self.exportID, clientTag: self.clientTag, object: object.handle))
                } else {
                    writer.u32(0)
                    writer.u32(0)
                }
                isFirst = false
            }
            writer.u32(0)
            writer.u32(eof ? 1 : 0)
            precondition(writer.offset == replyBytes, "READDIRPLUS reply size miscounted")
            return writer.offset
        }
        return buffer
    }
}

/// Big-endian XDR items written at increasing offsets of memory the caller sized exactly
/// (bounds are checked once, by the caller, for the whole reply).
struct XDRRawWriter {
    let raw: UnsafeMutableRawBufferPointer
    var offset = 0

    init(_ raw: UnsafeMutableRawBufferPointer) {
        self.raw = raw
    }

    @inline(__always)
    mutating func u32(_ value: UInt32) {
        self.raw.storeBytes(of: value.bigEndian, toByteOffset: self.offset, as: UInt32.self)
        self.offset += 4
    }

    @inline(__always)
    mutating func u64(_ value: UInt64) {
        self.raw.storeBytes(of: value.bigEndian, toByteOffset: self.offset, as: UInt64.self)
        self.offset += 8
    }

    /// Variable-length opaque data: length, bytes, zero padding.
    mutating func opaque(_ bytes: [UInt8]) {
        self.u32(UInt32(truncatingIfNeeded: bytes.count))
        precondition(self.offset + bytes.count + xdrPadding(bytes.count) <= self.raw.count)
        bytes.withUnsafeBytes { raw in
            if let source = raw.baseAddress, raw.count > 0 {
                (self.raw.baseAddress! + self.offset).copyMemory(from: source, byteCount: raw.count)
            }
        }
        self.offset += bytes.count
        for _ in 0..<xdrPadding(bytes.count) {
            self.raw[self.offset] = 0
            self.offset += 1
        }
    }

    /// The handle's bytes (`ServerFileHandle.encodedBytes`, a multiple of 4: no padding).
    mutating func handle(_ handle: ServerFileHandle) {
        handle.write(
            to: UnsafeMutableRawBufferPointer(
                rebasing: self.raw[self.offset..<(self.offset + ServerFileHandle.encodedBytes)]))
        self.offset += ServerFileHandle.encodedBytes
    }

    /// A fattr3, as `FileAttributes3(attributes).encode` writes it.
    mutating func attributes(_ attributes: Attributes) {
        let wire = FileAttributes3(attributes)
        self.u32(wire.type.rawValue)
        self.u32(wire.mode)
        self.u32(wire.nlink)
        self.u32(wire.uid)
        self.u32(wire.gid)
        self.u64(wire.size)
        self.u64(wire.used)
        self.u32(wire.rdev.specdata1)
        self.u32(wire.rdev.specdata2)
        self.u64(wire.fsid)
        self.u64(wire.fileid)
        self.u32(wire.atime.seconds)
        self.u32(wire.atime.nseconds)
        self.u32(wire.mtime.seconds)
        self.u32(wire.mtime.nseconds)
        self.u32(wire.ctime.seconds)
        self.u32(wire.ctime.nseconds)
    }
}

extension NFS3Request {
    /// As `run`, for a handler that encodes its whole result (status and body) itself.
    func runEncoding<Args: XDRDecodable, OK, Fail>(
        _ arguments: inout ByteBuffer,
        _ type: Args.Type,
        _ primary: KeyPath<Args, FileHandle3>,
        _ rejected: NFS3Result<OK, Fail>,
        _ resolve: (FileHandle3) -> Result<(ExportCall, ObjectHandle), CallRejection>,
        _ body: (Args, ExportCall, ObjectHandle) -> ByteBuffer
    ) -> NFS3Outcome {
        guard let args = self.decodeArguments(Args.self, &arguments) else { return .garbageArguments }
        switch resolve(args[keyPath: primary]) {
        case .success((var call, let object)):
            call.procedureName = self.procedure.name
            return .success(body(args, call, object))
        case .failure(let rejection):
            return self.answer(rejection, rejected)
        }
    }
}
