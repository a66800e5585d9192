import NIOCore
import XDR

// Transcribed from RFC 1813 §2.5 (ftype3) and §2.5 (specdata3).

/// ftype3: the type of a file system object (RFC 1813 §2.5).
public enum FileType3: UInt32, Sendable, Hashable, CaseIterable, XDRCodable {
    /// NF3REG: a regular file.
    case reg = 1
    /// NF3DIR: a directory.
    case dir = 2
    /// NF3BLK: a block special device.
    case blk = 3
    /// NF3CHR: a character special device.
    case chr = 4
    /// NF3LNK: a symbolic link.
    case lnk = 5
    /// NF3SOCK: a socket.
    case sock = 6
    /// NF3FIFO: a named pipe.
    case fifo = 7

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let raw = try buffer.readXDRUInt32()
        guard let value = FileType3(rawValue: raw) else {
            throw XDRError.invalidEnum(type: "ftype3", value: raw)
        }
        self = value
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.rawValue)
    }
}

/// specdata3: the major and minor numbers of a device (RFC 1813 §2.5).
public struct SpecData3: Sendable, Hashable, XDRCodable {
    /// specdata1: the major device number.
    public var specdata1: UInt32
    /// specdata2: the minor device number.
    public var specdata2: UInt32

    public init(specdata1: UInt32 = 0, specdata2: UInt32 = 0) {
        self.specdata1 = specdata1
        self.specdata2 = specdata2
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        self.specdata1 = try buffer.readXDRUInt32()
        self.specdata2 = try buffer.readXDRUInt32()
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        buffer.writeXDR(self.specdata1)
        buffer.writeXDR(self.specdata2)
    }
}
