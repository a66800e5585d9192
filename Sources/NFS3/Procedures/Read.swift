import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.6 (READ).

/// READ3args (RFC 1813 §3.3.6).
public struct Read3Args: Sendable, Hashable, XDRCodable {
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

/// READ3resok (RFC 1813 §3.3.6). `data` is a `ByteBuffer` so a server can hand the bytes it
/// read to the encoder without copying them into an array.
public struct Read3ResOK: Sendable, Hashable, XDRCodable {
    /// file_attributes
    public var fileAttributes: PostOpAttr
    /// count: the number of bytes returned; equal to `data.readableBytes`.
    public var count: UInt32
    /// eof: whether the read reached the end of the file.
    public var eof: Bool
    /// data
    public var data: ByteBuffer

    /// Creates a READ result whose `count` is the size of `data`.
    public init(fileAttributes: PostOpAttr, eof: Bool, data: ByteBuffer) {
        self.init(
            fileAttributes: fileAttributes,
            count: UInt32(truncatingIfNeeded: data.readableBytes),
            eof: eof,
            data: data
        )
    }

    public init(fileAttributes: PostOpAttr, count: UInt32, eof: Bool, data: ByteBuffer) {
        self.fileAttributes = fileAttributes
        self.count = count
        self.eof = eof
        self.data = data
    }

    /// Decodes a READ3resok whose data is at most `NFS3.maxDecodedDataBytes` bytes.
    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        try self.init(xdr: &buffer, maxDataBytes: NFS3.maxDecodedDataBytes)
    }

    /// Decodes a READ3resok whose data is at most `maxDataBytes` bytes.
    public init(xdr buffer: inout ByteBuffer, maxDataBytes: Int) throws(XDRError) {
        self.fileAttributes = try PostOpAttr(xdr: &buffer)
        self.count = try buffer.readXDRUInt32()
        self.eof = try buffer.readXDRBool()
        self.data = try buffer.readXDRVariableOpaqueSlice(maxLength: maxDataBytes)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fileAttributes.encode(xdr: &buffer)
        buffer.writeXDR(self.count)
        buffer.writeXDR(self.eof)
        buffer.writeXDRVariableOpaque(buffer: self.data)
    }
}

/// READ3resfail (RFC 1813 §3.3.6).
public struct Read3ResFail: Sendable, Hashable, XDRCodable {
    /// file_attributes
    public var fileAttributes: PostOpAttr

    public init(fileAttributes: PostOpAttr) {
        self.fileAttributes = fileAttributes
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fileAttributes = try PostOpAttr(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fileAttributes.encode(xdr: &buffer)
    }
}

/// READ3res (RFC 1813 §3.3.6).
public typealias Read3Res = NFS3Result<Read3ResOK, Read3ResFail>
