import NIOCore
import XDR

/// The reply of an NFS version 3 procedure: RFC 1813 declares each as
/// `union XXX3res switch (nfsstat3 status) { case NFS3_OK: XXX3resok resok; default: XXX3resfail resfail; }`.
///
/// The failure case carries its own body, so a reply can never claim an error without the
/// attributes (wcc_data, post_op_attr) the RFC requires alongside it. A `.fail` must carry a
/// status other than `.ok`; one that does not is encoded as is and decodes as `.ok`.
public enum NFS3Result<OK: XDRCodable & Equatable, Fail: XDRCodable & Equatable>: XDRCodable, Equatable {
    case ok(OK)
    case fail(NFSStatus3, Fail)

    /// The status word that leads the reply on the wire.
    public var status: NFSStatus3 {
        switch self {
        case .ok: return .ok
        case .fail(let status, _): return status
        }
    }

    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {
        let status = try NFSStatus3(xdr: &buffer)
        if status == .ok {
            self = .ok(try OK(xdr: &buffer))
        } else {
            self = .fail(status, try Fail(xdr: &buffer))
        }
    }

    public func encode(xdr buffer: inout ByteBuffer) {
        switch self {
        case .ok(let body):
            NFSStatus3.ok.encode(xdr: &buffer)
            body.encode(xdr: &buffer)
        case .fail(let status, let body):
            status.encode(xdr: &buffer)
            body.encode(xdr: &buffer)
        }
    }
}

/// XDR `void`: the arguments of NULL, the failure body of GETATTR, MOUNT's void replies.
public struct NFS3Void: XDRCodable, Equatable, Hashable {
    public init() {}
    public init(xdr buffer: inout ByteBuffer) throws(XDRError) {}
    public func encode(xdr buffer: inout ByteBuffer) {}
}

extension ByteBuffer {
    /// Reads an XDR linked list (`entry *next` chains, RFC 4506 §4.19): a value-follows bool
    /// before every element and a FALSE after the last. Iterative, so a long list cannot
    /// exhaust the stack; every element costs at least four bytes of input.
    @inlinable
    public mutating func readXDRLinkedList<Element>(
        _ element: (inout ByteBuffer) throws(XDRError) -> Element
    ) throws(XDRError) -> [Element] {
        var elements: [Element] = []
        while try self.readXDRBool() {
            elements.append(try element(&self))
        }
        return elements
    }

    /// Writes an XDR linked list: TRUE and the element for each element, then FALSE.
    @inlinable
    public mutating func writeXDRLinkedList<Element>(
        _ elements: [Element],
        _ element: (inout ByteBuffer, Element) -> Void
    ) {
        for value in elements {
            self.writeXDR(true)
            element(&self, value)
        }
        self.writeXDR(false)
    }

    /// Reads a filename3 (RFC 1813 §2.5) as bytes, bounded by `NFS3.maxDecodedNameBytes`.
    @inlinable
    public mutating func readNFSFilename() throws(XDRError) -> [UInt8] {
        try self.readXDRVariableOpaque(maxLength: NFS3.maxDecodedNameBytes)
    }

    /// Reads an nfspath3 (RFC 1813 §2.5) as bytes, bounded by `NFS3.maxDecodedPathBytes`.
    @inlinable
    public mutating func readNFSPath() throws(XDRError) -> [UInt8] {
        try self.readXDRVariableOpaque(maxLength: NFS3.maxDecodedPathBytes)
    }
}

/// The number of bytes an XDR variable-length opaque or string of `length` bytes occupies:
/// length word, data, padding.
@inlinable
public func xdrOpaqueSize(_ length: Int) -> Int {
    4 + length + xdrPadding(length)
}
