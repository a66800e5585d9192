import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.16 (READDIR).

/// READDIR3args (RFC 1813 §3.3.16).
public struct ReadDir3Args: Sendable, Hashable, XDRCodable {
    /// dir
    public var dir: FileHandle3
    /// cookie
    public var cookie: UInt64
    /// cookieverf
    public var cookieverf: CookieVerifier3
    /// count
    public var count: UInt32

    public init(dir: FileHandle3, cookie: UInt64, cookieverf: CookieVerifier3, count: UInt32) {
        self.dir = dir
        self.cookie = cookie
        self.cookieverf = cookieverf
        self.count = count
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.dir = try FileHandle3(xdr: &buffer)
        self.cookie = try buffer.readXDRUInt64()
        self.cookieverf = try CookieVerifier3(xdr: &buffer)
        self.count = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.dir.encode(xdr: &buffer)
        buffer.writeXDR(self.cookie)
        self.cookieverf.encode(xdr: &buffer)
        buffer.writeXDR(self.count)
    }
}

/// entry3: one name of a READDIR reply (RFC 1813 §3.3.16). The `nextentry` pointer is the
/// array order: `ReadDir3ResOK` encodes the entries as the XDR linked list.
public struct Entry3: Sendable, Hashable, XDRCodable {
    /// fileid
    public var fileid: UInt64
    /// name: filename3, as bytes.
    public var name: [UInt8]
    /// cookie: where a later READDIR resumes after this entry.
    public var cookie: UInt64

    public init(fileid: UInt64, name: [UInt8], cookie: UInt64) {
        self.fileid = fileid
        self.name = name
        self.cookie = cookie
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fileid = try buffer.readXDRUInt64()
        self.name = try buffer.readNFSFilename()
        self.cookie = try buffer.readXDRUInt64()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.fileid)
        buffer.writeXDRVariableOpaque(self.name)
        buffer.writeXDR(self.cookie)
    }

    /// The bytes an entry with a name of `nameLength` bytes adds to a READDIR reply,
    /// including the value-follows word that precedes it in the list.
    public static func encodedSize(nameLength: Int) -> Int {
        4 + 8 + xdrOpaqueSize(nameLength) + 8
    }
}

/// READDIR3resok with its dirlist3 (RFC 1813 §3.3.16).
public struct ReadDir3ResOK: Sendable, Hashable, XDRCodable {
    /// The bytes of a READDIR3resok with no entries, given its directory attributes:
    /// post_op_attr, cookieverf, the final value-follows FALSE and eof. Add
    /// `Entry3.encodedSize(nameLength:)` per entry; add 4 for the status word of READDIR3res.
    public static func emptyEncodedSize(dirAttributes: PostOpAttr) -> Int {
        dirAttributes.encodedSize + 8 + 4 + 4
    }

    /// dir_attributes
    public var dirAttributes: PostOpAttr
    /// cookieverf
    public var cookieverf: CookieVerifier3
    /// reply.entries, in list order.
    public var entries: [Entry3]
    /// reply.eof: whether the last entry is the last of the directory.
    public var eof: Bool

    public init(dirAttributes: PostOpAttr, cookieverf: CookieVerifier3, entries: [Entry3], eof: Bool) {
        self.dirAttributes = dirAttributes
        self.cookieverf = cookieverf
        self.entries = entries
        self.eof = eof
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.dirAttributes = try PostOpAttr(xdr: &buffer)
        self.cookieverf = try CookieVerifier3(xdr: &buffer)
        self.entries = try buffer.readXDRLinkedList { (buffer: inout ByteBuffer) throws(XDRError) in
            try Entry3(xdr: &buffer)
        }
        self.eof = try buffer.readXDRBool()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.dirAttributes.encode(xdr: &buffer)
        self.cookieverf.encode(xdr: &buffer)
        buffer.writeXDRLinkedList(self.entries) { $1.encode(xdr: &$0) }
        buffer.writeXDR(self.eof)
    }
}

/// READDIR3resfail (RFC 1813 §3.3.16).
public struct ReadDir3ResFail: Sendable, Hashable, XDRCodable {
    /// dir_attributes
    public var dirAttributes: PostOpAttr

    public init(dirAttributes: PostOpAttr) {
        self.dirAttributes = dirAttributes
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.dirAttributes = try PostOpAttr(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.dirAttributes.encode(xdr: &buffer)
    }
}

/// READDIR3res (RFC 1813 §3.3.16).
public typealias ReadDir3Res = NFS3Result<ReadDir3ResOK, ReadDir3ResFail>
