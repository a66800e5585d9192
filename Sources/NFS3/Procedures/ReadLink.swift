import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.5 (READLINK).

/// READLINK3args (RFC 1813 §3.3.5).
public struct ReadLink3Args: Sendable, Hashable, XDRCodable {
    /// symlink
    public var symlink: FileHandle3

    public init(symlink: FileHandle3) {
        self.symlink = symlink
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.symlink = try FileHandle3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.symlink.encode(xdr: &buffer)
    }
}

/// READLINK3resok (RFC 1813 §3.3.5).
///
/// `data` is the nfspath3 target, as bytes.
public struct ReadLink3ResOK: Sendable, Hashable, XDRCodable {
    /// symlink_attributes
    public var symlinkAttributes: PostOpAttr
    /// data
    public var data: [UInt8]

    public init(symlinkAttributes: PostOpAttr, data: [UInt8]) {
        self.symlinkAttributes = symlinkAttributes
        self.data = data
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.symlinkAttributes = try PostOpAttr(xdr: &buffer)
        self.data = try buffer.readNFSPath()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.symlinkAttributes.encode(xdr: &buffer)
        buffer.writeXDRVariableOpaque(self.data)
    }
}

/// READLINK3resfail (RFC 1813 §3.3.5).
public struct ReadLink3ResFail: Sendable, Hashable, XDRCodable {
    /// symlink_attributes
    public var symlinkAttributes: PostOpAttr

    public init(symlinkAttributes: PostOpAttr) {
        self.symlinkAttributes = symlinkAttributes
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.symlinkAttributes = try PostOpAttr(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.symlinkAttributes.encode(xdr: &buffer)
    }
}

/// READLINK3res (RFC 1813 §3.3.5).
public typealias ReadLink3Res = NFS3Result<ReadLink3ResOK, ReadLink3ResFail>
