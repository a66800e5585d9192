import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.10 (SYMLINK).

/// symlinkdata3 (RFC 1813 §3.3.10).
public struct SymlinkData3: Sendable, Hashable, XDRCodable {
    /// symlink_attributes
    public var symlinkAttributes: SetAttributes3
    /// symlink_data
    public var symlinkData: [UInt8]

    public init(symlinkAttributes: SetAttributes3, symlinkData: [UInt8]) {
        self.symlinkAttributes = symlinkAttributes
        self.symlinkData = symlinkData
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.symlinkAttributes = try SetAttributes3(xdr: &buffer)
        self.symlinkData = try buffer.readNFSPath()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.symlinkAttributes.encode(xdr: &buffer)
        buffer.writeXDRVariableOpaque(self.symlinkData)
    }
}

/// SYMLINK3args (RFC 1813 §3.3.10).
public struct Symlink3Args: Sendable, Hashable, XDRCodable {
    /// where
    public var `where`: DirOpArgs3
    /// symlink
    public var symlink: SymlinkData3

    public init(`where`: DirOpArgs3, symlink: SymlinkData3) {
        self.where = `where`
        self.symlink = symlink
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.where = try DirOpArgs3(xdr: &buffer)
        self.symlink = try SymlinkData3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.where.encode(xdr: &buffer)
        self.symlink.encode(xdr: &buffer)
    }
}

/// SYMLINK3resok (RFC 1813 §3.3.10): the same shape as CREATE3resok.
public typealias Symlink3ResOK = Create3ResOK
/// SYMLINK3resfail (RFC 1813 §3.3.10).
public typealias Symlink3ResFail = Create3ResFail
/// SYMLINK3res (RFC 1813 §3.3.10).
public typealias Symlink3Res = NFS3Result<Symlink3ResOK, Symlink3ResFail>
