import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.15 (LINK).

/// LINK3args (RFC 1813 §3.3.15).
public struct Link3Args: Sendable, Hashable, XDRCodable {
    /// file
    public var file: FileHandle3
    /// link
    public var link: DirOpArgs3

    public init(file: FileHandle3, link: DirOpArgs3) {
        self.file = file
        self.link = link
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.file = try FileHandle3(xdr: &buffer)
        self.link = try DirOpArgs3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.file.encode(xdr: &buffer)
        self.link.encode(xdr: &buffer)
    }
}

/// LINK3resok and LINK3resfail (RFC 1813 §3.3.15).
public struct Link3ResBody: Sendable, Hashable, XDRCodable {
    /// file_attributes
    public var fileAttributes: PostOpAttr
    /// linkdir_wcc
    public var linkdirWcc: WccData

    public init(fileAttributes: PostOpAttr, linkdirWcc: WccData) {
        self.fileAttributes = fileAttributes
        self.linkdirWcc = linkdirWcc
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fileAttributes = try PostOpAttr(xdr: &buffer)
        self.linkdirWcc = try WccData(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fileAttributes.encode(xdr: &buffer)
        self.linkdirWcc.encode(xdr: &buffer)
    }
}

/// LINK3resok (RFC 1813 §3.3.15).
public typealias Link3ResOK = Link3ResBody
/// LINK3resfail (RFC 1813 §3.3.15).
public typealias Link3ResFail = Link3ResBody
/// LINK3res (RFC 1813 §3.3.15).
public typealias Link3Res = NFS3Result<Link3ResOK, Link3ResFail>
