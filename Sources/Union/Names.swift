// Names are bytes (NFS names are not Strings). A name that could leave a directory is rejected before any syscall.

enum Names {
    static let maxLength = 255

    /// Rejects `.`, `..`, empty names, names with `/` or NUL (`badName`) and names over 255 bytes (`nameTooLong`).
    static func validate(_ name: [UInt8]) throws(UnionError) {
        if name.isEmpty || name == [0x2e] || name == [0x2e, 0x2e] { throw .badName }
        if name.contains(0x2f) || name.contains(0) { throw .badName }
        if name.count > Self.maxLength { throw .nameTooLong }
    }

    static let ociWhiteoutPrefix: [UInt8] = Array(".wh.".utf8)
    static let ociOpaqueMarker: [UInt8] = Array(".wh..wh..opq".utf8)

    static func isOCIMarker(_ name: [UInt8]) -> Bool { name.starts(with: Self.ociWhiteoutPrefix) }

    static func join(_ path: [UInt8], _ name: [UInt8]) -> [UInt8] {
        path.isEmpty ? name : path + [0x2f] + name
    }

    static func split(_ path: [UInt8]) -> [[UInt8]] {
        path.split(separator: 0x2f, omittingEmptySubsequences: true).map { Array($0) }
    }

    static func joinAll(_ components: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for component in components { out = Self.join(out, component) }
        return out
    }
}
