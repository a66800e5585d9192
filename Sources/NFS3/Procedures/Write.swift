import NIOCore
import XDR

// Transcribed from RFC 1813 §3.3.7 (WRITE).

/// stable_how: how far the server must commit WRITE data before replying (RFC 1813 §3.3.7).
/// Ordered: a server may always commit more than asked (`committed >= stable`).
public enum StableHow3: UInt32, Sendable, Hashable, CaseIterable, Comparable, XDRCodable {
    /// UNSTABLE: the server may reply before committing data or metadata.
    case unstable = 0
    /// DATA_SYNC: data and the metadata needed to retrieve it are committed before the reply.
    case dataSync = 1
    /// FILE_SYNC: data and all file system metadata are committed before the reply.
    case fileSync = 2

    public static func < (lhs: StableHow3, rhs: StableHow3) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let raw = try buffer.readXDRUInt32()
        guard let value = StableHow3(rawValue: raw) else {
            throw XDRError.invalidEnum(type: "stable_how", value: raw)
        }
        self = value
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.rawValue)
    }
}

/// WRITE3args (RFC 1813 §3.3.7). `data` is a slice of the request buffer: the payload is
/// never copied between the socket and the file.
public struct Write3Args: Sendable, Hashable, XDRCodable {
    /// file
    public var file: FileHandle3
    /// offset
    public var offset: UInt64
    /// count: the number of bytes to write. The server checks it against `data`.
    public var count: UInt32
    /// stable
    public var stable: StableHow3
    /// data
    public var data: ByteBuffer

    /// Creates WRITE arguments whose `count` is the size of `data`.
    public init(file: FileHandle3, offset: UInt64, stable: StableHow3, data: ByteBuffer) {
        self.init(
            file: file,
            offset: offset,
            count: UInt32(truncatingIfNeeded: data.readableBytes),
            stable: stable,
            data: data
        )
    }

    public init(file: FileHandle3, offset: UInt64, count: UInt32, stable: StableHow3, data: ByteBuffer) {
        self.file = file
        self.offset = offset
        self.count = count
        self.stable = stable
        self.data = data
    }

    /// Decodes WRITE arguments whose data is at most `NFS3.maxDecodedDataBytes` bytes.
    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        try self.init(xdr: &buffer, maxDataBytes: NFS3.maxDecodedDataBytes)
    }

    /// Decodes WRITE arguments whose data is at most `maxDataBytes` bytes (the server passes
    /// its wtmax plus slack); a longer length is rejected before anything is allocated.
    public init(xdr buffer: inout ByteBuffer, maxDataBytes: Int) throws(XDRError) {
        self.file = try FileHandle3(xdr: &buffer)
        self.offset = try buffer.readXDRUInt64()
        self.count = try buffer.readXDRUInt32()
        self.stable = try StableHow3(xdr: &buffer)
        self.data = try buffer.readXDRVariableOpaqueSlice(maxLength: maxDataBytes)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.file.encode(xdr: &buffer)
        buffer.writeXDR(self.offset)
        buffer.writeXDR(self.count)
        self.stable.encode(xdr: &buffer)
        buffer.writeXDRVariableOpaque(buffer: self.data)
    }
}

/// WRITE3resok (RFC 1813 §3.3.7).
public struct Write3ResOK: Sendable, Hashable, XDRCodable {
    /// file_wcc
    public var fileWcc: WccData
    /// count
    public var count: UInt32
    /// committed
    public var committed: StableHow3
    /// verf
    public var verf: WriteVerifier3

    public init(fileWcc: WccData, count: UInt32, committed: StableHow3, verf: WriteVerifier3) {
        self.fileWcc = fileWcc
        self.count = count
        self.committed = committed
        self.verf = verf
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.fileWcc = try WccData(xdr: &buffer)
        self.count = try buffer.readXDRUInt32()
        self.committed = try StableHow3(xdr: &buffer)
        self.verf = try WriteVerifier3(xdr: &buffer)
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        self.fileWcc.encode(xdr: &buffer)
        buffer.writeXDR(self.count)
        self.committed.encode(xdr: &buffer)
        self.verf.encode(xdr: &buffer)
    }
}

/// WRITE3resfail (RFC 1813 §3.3.7).
public struct Write3ResFail: Sendable, Hashable, XDRCodable {
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

/// WRITE3res (RFC 1813 §3.3.7).
public typealias Write3Res = NFS3Result<Write3ResOK, Write3ResFail>
