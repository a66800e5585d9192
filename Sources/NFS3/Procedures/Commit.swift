import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.21 (COMMIT).

/// COMMIT3args (RFC 1813 §3.3.21).
public struct Commit3Args: Sendable, Hashable, XDRCodable {
    /// file
    public var file: FileHandle3
    /// offset
    public var offset: UInt64
    /// count
    public var count: UInt32

    public init(file: FileHandle3, offset: UInt64, count: UInt32) {
        self.file = file
        self.offset = offset
        self.count = count
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.file = try FileHandle3(xdr: &buffer)
        self.offset = try buffer.readXDRUInt64()
        self.count = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.file.encode(xdr: &buffer)
        buffer.writeXDR(self.offset)
        buffer.writeXDR(self.count)
    }
}

/// COMMIT3resok (RFC 1813 §3.3.21).
public struct Commit3ResOK: Sendable, Hashable, XDRCodable {
    /// file_wcc
    public var fileWcc: WccData
    /// verf
    public var verf: WriteVerifier3

    public init(fileWcc: WccData, verf: WriteVerifier3) {
        self.fileWcc = fileWcc
        self.verf = verf
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fileWcc = try WccData(xdr: &buffer)
        self.verf = try WriteVerifier3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fileWcc.encode(xdr: &buffer)
        self.verf.encode(xdr: &buffer)
    }
}

/// COMMIT3resfail (RFC 1813 §3.3.21).
public struct Commit3ResFail: Sendable, Hashable, XDRCodable {
    /// file_wcc
    public var fileWcc: WccData

    public init(fileWcc: WccData) {
        self.fileWcc = fileWcc
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fileWcc = try WccData(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fileWcc.encode(xdr: &buffer)
    }
}

/// COMMIT3res (RFC 1813 §3.3.21).
public typealias Commit3Res = NFS3Result<Commit3ResOK, Commit3ResFail>
