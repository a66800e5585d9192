import NIOCore

/// A type that can be read from XDR (RFC 4506). Implementations throw on truncated or invalid
/// input and never trap.
public protocol XDRDecodable: Sendable {
    init(xdr buffer: inout ByteBuffer) throws(XDRError)
}

/// A type that can be written as XDR (RFC 4506).
public protocol XDREncodable: Sendable {
    func encode(xdr buffer: inout ByteBuffer)
}

public typealias XDRCodable = XDRDecodable & XDREncodable

extension UInt32: XDRCodable {
    @inlinable public init(xdr buffer: inout ByteBuffer) throws(XDRError) { self = try buffer.readXDRUInt32() }
    @inlinable public func encode(xdr buffer: inout ByteBuffer) { buffer.writeXDR(self) }
}

extension Int32: XDRCodable {
    @inlinable public init(xdr buffer: inout ByteBuffer) throws(XDRError) { self = try buffer.readXDRInt32() }
    @inlinable public func encode(xdr buffer: inout ByteBuffer) { buffer.writeXDR(self) }
}

extension UInt64: XDRCodable {
    @inlinable public init(xdr buffer: inout ByteBuffer) throws(XDRError) { self = try buffer.readXDRUInt64() }
    @inlinable public func encode(xdr buffer: inout ByteBuffer) { buffer.writeXDR(self) }
}

extension Int64: XDRCodable {
    @inlinable public init(xdr buffer: inout ByteBuffer) throws(XDRError) { self = try buffer.readXDRInt64() }
    @inlinable public func encode(xdr buffer: inout ByteBuffer) { buffer.writeXDR(self) }
}

extension Bool: XDRCodable {
    @inlinable public init(xdr buffer: inout ByteBuffer) throws(XDRError) { self = try buffer.readXDRBool() }
    @inlinable public func encode(xdr buffer: inout ByteBuffer) { buffer.writeXDR(self) }
}

/// Encodes `value` into a fresh buffer (convenience for tests and small replies).
public func xdrEncoded<Value: XDREncodable>(_ value: Value) -> ByteBuffer {
    var buffer = ByteBuffer()
    value.encode(xdr: &buffer)
    return buffer
}
