import Foundation
import SunRPC

extension ExportRegistry {
    /// Why a call from `call`'s client was refused, in words an operator can act on: the
    /// client and its port, the export, the rule that matched (or that none did) and the fix,
    /// e.g. `source port 40123 is not privileged: add insecure to rule 10.0.0.0/24(rw)`.
    func refusalMessage(_ rejection: CallRejection, path: String, call: RPCCallContext) -> String {
        let client = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
        let exports = self.exports
        let export = exports.filter { isSameOrInside(path, $0.path) }.max { $0.path.count < $1.path.count }
        let position = export.flatMap { export in exports.firstIndex { $0.path == export.path } }
        let rule = export.flatMap { export in call.remoteIPAddress.flatMap { export.clients.bestMatch(for: $0) } }
        let who = "client \(client) port \(call.remotePort), export \(export?.path ?? path)"
        let why: String
        switch rejection {
        case .noSuchExport:
            let known = exports.map(\.path).joined(separator: ", ")
            why =
                "no export \(path) (exports: \(known.isEmpty ? "none" : known)); the client must mount one of them, or add an [[export]] with that path"
        case .accessDenied where rule == nil:
            let rules = export.map { $0.clients.map(\.text).joined(separator: " ") } ?? ""
            let key = position.map { "export[\($0)].clients" } ?? "the export's clients"
            why = "no rule matches \(client) (rules: \(rules)); add one for it to \(key) if it should mount"
        case .accessDenied:
            why =
                "rule \(rule?.text ?? "?") matched, but the file handle belongs to another client's layer or was refused by the union's permissions"
        case .tooWeak:
            why =
                "source port \(call.remotePort) is not privileged: add insecure to rule \(rule?.text ?? "?") (or mount from a port below 1024, as a root client does)"
        case .unsupportedCredential:
            why = "the call's credential flavor is not supported: the client must use AUTH_SYS (sec=sys)"
        case .layerUnavailable(let reason):
            why = "its layers cannot be opened: \(reason)"
        case .clientLimitReached(let reason):
            why = reason
        case .notDirectory:
            why = "\(path) is not a directory; mount the export or a directory below it"
        case .badHandle, .stale:
            why = "\(rejection)"
        }
        return "\(who): \(why)"
    }

    /// Why the layers of `export` could not be opened, naming the layer: a lower that is gone
    /// is the usual cause, and the union's own error (`noEntry`) does not say which one.
    func layerProblem(export: ExportConfiguration, error: any Error) -> String {
        let position = self.exports.firstIndex { $0.path == export.path }
        let key = position.map { "export[\($0)].lowers" } ?? "the export's lowers"
        for lower in export.lowers {
            var info = stat()
            if stat(lower, &info) != 0 {
                return "lower layer \(lower): \(String(cString: strerror(errno))); create it or fix \(key)"
            }
            if info.st_mode & S_IFMT != S_IFDIR {
                return "lower layer \(lower) is not a directory; fix \(key)"
            }
        }
        return "export \(export.path): \(error)"
    }
}
