/// Turns a client identity (an address or a machine name, possibly mapped through the
/// `[clients]` table) into a string that is safe as one path component: it becomes the name of
/// the client's upper layer directory.
///
/// Letters, digits, `.`, `-` and `_` are kept; IPv6 colons become `-`; anything else becomes
/// `_`. A leading dot is replaced (no hidden or `..` directories), the result is never empty
/// and at most 128 bytes, so no client can name a directory outside the template's parent.
public func sanitizedClientKey(_ raw: String) -> String {
    // Most keys (an IPv4 address, a plain host name) are already safe: every call's admission asks.
    let utf8 = raw.utf8
    if !utf8.isEmpty, utf8.count <= 128, utf8.first != UInt8(ascii: "."), utf8.allSatisfy(isClientKeyByte) {
        return raw
    }
    var result = ""
    for scalar in raw.unicodeScalars {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", "-", "_", ".":
            result.unicodeScalars.append(scalar)
        case ":":
            result.append("-")
        default:
            result.append("_")
        }
        if result.utf8.count >= 128 { break }
    }
    if result.hasPrefix(".") {
        result = "_" + result.dropFirst()
    }
    return result.isEmpty ? "_" : result
}

private func isClientKeyByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
        return true
    default:
        return false
    }
}
