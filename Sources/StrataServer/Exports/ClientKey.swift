/// Turns a client identity (an address or a machine name, possibly mapped through the
/// `[clients]` table) into a string that is safe as one path component: it becomes the name of
/// the client's upper layer directory.
///
/// Letters, digits, `.`, `-` and `_` are kept; IPv6 colons become `-`; anything else becomes
/// `_`. A leading dot is replaced (no hidden or `..` directories), the result is never empty
/// and at most 128 bytes, so no client can name a directory outside the template's parent.
public func sanitizedClientKey(_ raw: String) -> String {
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
