import Foundation
import SunRPC
import Union

/// MNT: the one call that creates a client's upper layer and enters it in the mount table.
extension ExportRegistry {
    /// MNT: admits the caller to the export that contains `path`, creating its upper layer on
    /// first mount, records the mount for DUMP and returns the file handle of `path`: the
    /// export's root, or, as mountd allows, a directory below it (libnfs mounts the directory
    /// of the file it is asked for), looked up in the union with the caller's credentials.
    public func mount(path: String, call: RPCCallContext) -> Result<(ExportCall, [UInt8]), CallRejection> {
        let components = path.split(separator: "/").map(String.init)
        let export: ExportConfiguration? = self.state.withReadLock { state in
            // The longest export path that is a prefix of `path` on component boundaries.
            state.configuration.exports
                .filter { export in
                    let exportComponents = export.path.split(separator: "/").map(String.init)
                    return components.starts(with: exportComponents)
                }
                .max { $0.path.count < $1.path.count }
        }
        guard let export else { return .failure(.noSuchExport) }
        let below = components.dropFirst(export.path.split(separator: "/").count)
        do {
            // A mount is where a client moves to its due image version (a reboot): its calls
            // until then stay on the version they started on.
            if let rule = self.rule(for: export, call: call),
                !(rule.options.requiresPrivilegedPort && call.remotePort >= 1024)
            {
                let clientKey = self.clientKey(
                    for: export, rule: rule, call: call, clientKeys: self.configuration.clientKeys)
                try self.moveIfDue(export: export, clientKey: clientKey)
            }
            let admitted = try self.admit(export: export, call: call, create: true)
            var object = admitted.namespace.rootHandle
            for component in below {
                do {
                    let (next, attributes) = try admitted.namespace.lookup(
                        object, Array(component.utf8), as: admitted.credentials)
                    guard attributes.type == .directory else { return .failure(.notDirectory) }
                    object = next
                } catch {
                    switch error {
                    case .accessDenied, .notPermitted: return .failure(.accessDenied)
                    case .notDirectory: return .failure(.notDirectory)
                    default: return .failure(.noSuchExport)
                    }
                }
            }
            let host = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
            let record = MountRecord(host: host, directory: export.path, clientKey: admitted.clientKey)
            self.changeMountTable { mounts in
                if !mounts.contains(record) { mounts.append(record) }
            }
            return .success((admitted, admitted.fileHandle(object)))
        } catch {
            return .failure(error)
        }
    }
}
