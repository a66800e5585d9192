import NIOCore

// RFC 4506: every item is a multiple of four bytes, big-endian.

/// Bytes of padding that follow `length` bytes of opaque data (RFC 4506 §4.9, §4.10).
@inlinable
public func xdrPadding(_ length: Int) -> Int {
    (4 - (length & 3)) & 3
}

extension ByteBuffer {
    // MARK: Decoding

    @inlinable
    mutating func requireXDR(_ count: Int) throws(XDRError) {
        if self.readableBytes < count {
            throw XDRError.truncated(needed: count, available: self.readableBytes)
        }
    }

    /// Reads an XDR unsigned int (RFC 4506 §4.2).
    @inlinable
    public mutating func readXDRUInt32() throws(XDRError) -> UInt32 {
        guard let value = self.readInteger(endianness: .big, as: UInt32.self) else {
            throw XDRError.truncated(needed: 4, available: self.readableBytes)
        }
        return value
    }

    /// Reads an XDR int (RFC 4506 §4.1).
    @inlinable
    public mutating func readXDRInt32() throws(XDRError) -> Int32 {
        Int32(bitPattern: try self.readXDRUInt32())
    }

    /// Reads an XDR unsigned hyper (RFC 4506 §4.5).
    @inlinable
    public mutating func readXDRUInt64() throws(XDRError) -> UInt64 {
        guard let value = self.readInteger(endianness: .big, as: UInt64.self) else {
            throw XDRError.truncated(needed: 8, available: self.readableBytes)
        }
        return value
    }

    /// Reads an XDR hyper (RFC 4506 §4.5).
    @inlinable
    public mutating func readXDRInt64() throws(XDRError) -> Int64 {
        Int64(bitPattern: try self.readXDRUInt64())
    }

    /// Reads an XDR bool (RFC 4506 §4.4); anything but 0 or 1 is an error.
    @inlinable
    public mutating func readXDRBool() throws(XDRError) -> Bool {
        switch try self.readXDRUInt32() {
        case 0: return false
        case 1: return true
        case let other: throw XDRError.invalidBool(other)
        }
    }

    /// Reads fixed-length opaque data of `count` bytes plus its padding (RFC 4506 §4.9).
    @inlinable
    public mutating func readXDRFixedOpaque(count: Int) throws(XDRError) -> [UInt8] {
        let padded = count + xdrPadding(count)
        try self.requireXDR(padded)
        let bytes = self.readBytes(length: count) ?? []
        try self.skipXDRPadding(count)
        return bytes
    }

    /// Reads the length word of a variable-length item and checks it against `limit` and
    /// against what the buffer can still hold, before anything is allocated.
    @inlinable
    mutating func readXDRLength(limit: Int, bytesPerElement: Int) throws(XDRError) -> Int {
        let length = try self.readXDRUInt32()
        guard Int(length) <= limit else {
            throw XDRError.lengthTooLarge(length: length, limit: limit)
        }
        let needed = Int(length) * bytesPerElement
        if needed > self.readableBytes {
            throw XDRError.truncated(needed: needed, available: self.readableBytes)
        }
        return Int(length)
    }

    @inlinable
    mutating func skipXDRPadding(_ length: Int) throws(XDRError) {
        let pad = xdrPadding(length)
        guard pad > 0 else { return }
        try self.requireXDR(pad)
        for _ in 0..<pad where self.readInteger(as: UInt8.self) != 0 {
            throw XDRError.nonZeroPadding
        }
    }

    /// Reads variable-length opaque data (RFC 4506 §4.10) of at most `maxLength` bytes.
    @inlinable
    public mutating func readXDRVariableOpaque(maxLength: Int) throws(XDRError) -> [UInt8] {
        let length = try self.readXDRLength(limit: maxLength, bytesPerElement: 1)
        try self.requireXDR(length + xdrPadding(length))
        let bytes = self.readBytes(length: length) ?? []
        try self.skipXDRPadding(length)
        return bytes
    }

    /// Reads variable-length opaque data as a slice of this buffer (no copy): for bulk data
    /// such as the payload of an NFS WRITE.
    @inlinable
    public mutating func readXDRVariableOpaqueSlice(maxLength: Int) throws(XDRError) -> ByteBuffer {
        let length = try self.readXDRLength(limit: maxLength, bytesPerElement: 1)
        try self.requireXDR(length + xdrPadding(length))
        let slice = self.readSlice(length: length) ?? ByteBuffer()
        try self.skipXDRPadding(length)
        return slice
    }

    /// Reads an XDR string (RFC 4506 §4.11) as raw bytes: names on the wire are bytes, not
    /// necessarily UTF-8.
    @inlinable
    public mutating func readXDRStringBytes(maxLength: Int) throws(XDRError) -> [UInt8] {
        try self.readXDRVariableOpaque(maxLength: maxLength)
    }

    /// Reads an XDR string and decodes it as UTF-8, replacing invalid sequences.
    @inlinable
    public mutating func readXDRString(maxLength: Int) throws(XDRError) -> String {
        String(decoding: try self.readXDRVariableOpaque(maxLength: maxLength), as: UTF8.self)
    }

    /// Reads a variable-length array (RFC 4506 §4.13) of at most `maxCount` elements. Each
    /// element takes at least `minimumElementBytes` on the wire, which bounds the allocation by
    /// the bytes actually received.
    @inlinable
    public mutating func readXDRArray<Element>(
        maxCount: Int,
        minimumElementBytes: Int = 4,
        _ element: (inout ByteBuffer) throws(XDRError) -> Element
    ) throws(XDRError) -> [Element] {
        let count = try self.readXDRLength(limit: maxCount, bytesPerElement: max(1, minimumElementBytes))
        var result: [Element] = []
        result.reserveCapacity(count)
        for _ in 0..<count {
            result.append(try element(&self))
        }
        return result
    }

    /// Reads optional-data (RFC 4506 §4.19): a bool, then the value if it is TRUE.
    @inlinable
    public mutating func readXDROptional<Value>(
        _ value: (inout ByteBuffer) throws(XDRError) -> Value
    ) throws(XDRError) -> Value? {
        try self.readXDRBool() ? try value(&self) : nil
    }

    /// Reads a value of an `XDRDecodable` type.
    @inlinable
    public mutating func readXDR<Value: XDRDecodable>(_ type: Value.Type = Value.self) throws(XDRError) -> Value {
        try Value(xdr: &self)
    }

    // MARK: Encoding

    @inlinable
    public mutating func writeXDR(_ value: UInt32) {
        self.writeInteger(value, endianness: .big)
    }

    @inlinable
    public mutating func writeXDR(_ value: Int32) {
        self.writeInteger(UInt32(bitPattern: value), endianness: .big)
    }

    @inlinable
    public mutating func writeXDR(_ value: UInt64) {
        self.writeInteger(value, endianness: .big)
    }

    @inlinable
    public mutating func writeXDR(_ value: Int64) {
        self.writeInteger(UInt64(bitPattern: value), endianness: .big)
    }

    @inlinable
    public mutating func writeXDR(_ value: Bool) {
        self.writeXDR(value ? UInt32(1) : UInt32(0))
    }

    @inlinable
    mutating func writeXDRPadding(_ length: Int) {
        let pad = xdrPadding(length)
        if pad > 0 {
            self.writeRepeatingByte(0, count: pad)
        }
    }

    /// Writes fixed-length opaque data (RFC 4506 §4.9): the bytes, then zero padding.
    @inlinable
    public mutating func writeXDRFixedOpaque<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        self.writeBytes(bytes)
        self.writeXDRPadding(bytes.count)
    }

    /// Writes variable-length opaque data (RFC 4506 §4.10): length, bytes, zero padding.
    @inlinable
    public mutating func writeXDRVariableOpaque<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        self.writeXDR(UInt32(truncatingIfNeeded: bytes.count))
        self.writeBytes(bytes)
        self.writeXDRPadding(bytes.count)
    }

    /// Writes the readable bytes of `buffer` as variable-length opaque data.
    @inlinable
    public mutating func writeXDRVariableOpaque(buffer: ByteBuffer) {
        self.writeXDR(UInt32(truncatingIfNeeded: buffer.readableBytes))
        var copy = buffer
        self.writeBuffer(&copy)
        self.writeXDRPadding(buffer.readableBytes)
    }

    /// Writes an XDR string (RFC 4506 §4.11).
    @inlinable
    public mutating func writeXDRString(_ string: String) {
        self.writeXDRVariableOpaque(Array(string.utf8))
    }

    /// Writes a variable-length array (RFC 4506 §4.13).
    @inlinable
    public mutating func writeXDRArray<Element>(_ elements: [Element], _ element: (inout ByteBuffer, Element) -> Void) {
        self.writeXDR(UInt32(truncatingIfNeeded: elements.count))
        for value in elements {
            element(&self, value)
        }
    }

    /// Writes optional-data (RFC 4506 §4.19).
    @inlinable
    public mutating func writeXDROptional<Value>(_ value: Value?, _ write: (inout ByteBuffer, Value) -> Void) {
        if let value {
            self.writeXDR(true)
            write(&self, value)
        } else {
            self.writeXDR(false)
        }
    }

    /// Writes a value of an `XDREncodable` type.
    @inlinable
    public mutating func writeXDR<Value: XDREncodable>(_ value: Value) {
        value.encode(xdr: &self)
    }
}
