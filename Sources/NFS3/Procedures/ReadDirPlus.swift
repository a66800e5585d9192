import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.17 (READDIRPLUS).

/// READDIRPLUS3args (RFC 1813 §3.3.17).
public struct ReadDirPlus3Args: Sendable, Hashable, XDRCodable {
    /// dir
    public var dir: FileHandle3
    /// cookie
    public var cookie: UInt64
    /// cookieverf
    public var cookieverf: CookieVerifier3
    /// dircount
    public var dircount: UInt32
    /// maxcount
    public var maxcount: UInt32

    public init(
        dir: FileHandle3,
        cookie: UInt64,
        cookieverf: CookieVerifier3,
        dircount: UInt32,
        maxcount: UInt32
    ) {
        self.dir = dir
        self.cookie = cookie
        self.cookieverf = cookieverf
        self.dircount = dircount
        self.maxcount = maxcount
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.dir = try FileHandle3(xdr: &buffer)
        self.cookie = try buffer.readXDRUInt64()
        self.cookieverf = try CookieVerifier3(xdr: &buffer)
        self.dircount = try buffer.readXDRUInt32()
        self.maxcount = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.dir.encode(xdr: &buffer)
        buffer.writeXDR(self.cookie)
        self.cookieverf.encode(xdr: &buffer)
        buffer.writeXDR(self.dircount)
        buffer.writeXDR(self.maxcount)
    }
}

/// entryplus3: one name of a READDIRPLUS reply with its attributes and handle
/// (RFC 1813 §3.3.17).
public struct EntryPlus3: Sendable, Hashable, XDRCodable {
    /// fileid
    public var fileid: UInt64
    /// name: filename3, as bytes.
    public var name: [UInt8]
    /// cookie
    public var cookie: UInt64
    /// name_attributes
    public var nameAttributes: PostOpAttr
    /// name_handle
    public var nameHandle: PostOpFileHandle3

    public init(
        fileid: UInt64,
        name: [UInt8],
        cookie: UInt64,
        nameAttributes: PostOpAttr,
        nameHandle: PostOpFileHandle3
    ) {
        self.fileid = fileid
        self.name = name
        self.cookie = cookie
        self.nameAttributes = nameAttributes
        self.nameHandle = nameHandle
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fileid = try buffer.readXDRUInt64()
        self.name = try buffer.readNFSFilename()
        self.cookie = try buffer.readXDRUInt64()
        self.nameAttributes = try PostOpAttr(xdr: &buffer)
        self.nameHandle = try PostOpFileHandle3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.fileid)
        buffer.writeXDRVariableOpaque(self.name)
        buffer.writeXDR(self.cookie)
        self.nameAttributes.encode(xdr: &buffer)
        self.nameHandle.encode(xdr: &buffer)
    }

    /// The bytes of the fileid, name and cookie of an entry (what RFC 1813 §3.3.17 counts
    /// against dircount), including its value-follows word.
    public static func directoryInfoSize(nameLength: Int) -> Int {
        Entry3.encodedSize(nameLength: nameLength)
    }

    /// The bytes this entry adds to a READDIRPLUS reply (counted against maxcount),
    /// including its value-follows word.
    public var encodedSize: Int {
        Entry3.encodedSize(nameLength: self.name.count) + self.nameAttributes.encodedSize + self.nameHandle.encodedSize
    }
}

/// READDIRPLUS3resok with its dirlistplus3 (RFC 1813 §3.3.17).
public struct ReadDirPlus3ResOK: Sendable, Hashable, XDRCodable {
    /// The bytes of a READDIRPLUS3resok with no entries; see
    /// `ReadDir3ResOK.emptyEncodedSize(dirAttributes:)`.
    public static func emptyEncodedSize(dirAttributes: PostOpAttr) -> Int {
        ReadDir3ResOK.emptyEncodedSize(dirAttributes: dirAttributes)
    }

    /// dir_attributes
    public var dirAttributes: PostOpAttr
    /// cookieverf
    public var cookieverf: CookieVerifier3
    /// reply.entries, in list order.
    public var entries: [EntryPlus3]
    /// reply.eof
    public var eof: Bool

    public init(dirAttributes: PostOpAttr, cookieverf: CookieVerifier3, entries: [EntryPlus3], eof: Bool) {
        self.dirAttributes = dirAttributes
        self.cookieverf = cookieverf
        self.entries = entries
        self.eof = eof
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.dirAttributes = try PostOpAttr(xdr: &buffer)
        self.cookieverf = try CookieVerifier3(xdr: &buffer)
        self.entries = try buffer.readXDRLinkedList { (buffer: inout ByteBuffer) throws(XDRError) in
            try EntryPlus3(xdr: &buffer)
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

/// READDIRPLUS3resfail (RFC 1813 §3.3.17).
public struct ReadDirPlus3ResFail: Sendable, Hashable, XDRCodable {
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

/// READDIRPLUS3res (RFC 1813 §3.3.17).
public typealias ReadDirPlus3Res = NFS3Result<ReadDirPlus3ResOK, ReadDirPlus3ResFail>
