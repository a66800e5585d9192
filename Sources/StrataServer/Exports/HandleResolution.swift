import Foundation
import SunRPC
import Union

/// Handle resolution: a file handle from the wire, checked against the namespace of its caller.
extension ExportRegistry {
    /// Resolves a file handle from the wire for the caller: the export must still exist, the
    /// caller must be admitted, and the handle must name the caller's own namespace.
    public func resolve(fileHandle bytes: [UInt8], for call: RPCCallContext) -> Result<(ExportCall, ObjectHandle), CallRejection> {
        let handle: ServerFileHandle
        do {
            handle = try ServerFileHandle(bytes: bytes)
        } catch {
            return .failure(.badHandle)
        }
        let found = self.state.withReadLock { state in
            state.exportsByID[handle.exportID].map { ($0, state.configuration.clientKeys) }
        }
        guard let (export, clientKeys) = found else {
            return .failure(.stale)
        }
        do {
            let admitted = try self.admit(export: export, call: call, create: false, knownClientKeys: clientKeys)
            guard admitted.clientTag == handle.clientTag else {
                // Either another client's handle (refused) or one of this client's from before a
                // reset, or from before its rule changed between ro and rw (stale).
                guard export.hasPerClientUpper else { return .failure(.accessDenied) }
                if handle.clientTag == 0 { return .failure(.stale) }
                let generations = self.state.withReadLock { $0.generations[admitted.clientKey] } ?? 0
                for old in 0...generations
                where self.clientTag(export: export, clientKey: admitted.clientKey, generation: old) == handle.clientTag {
                    return .failure(.stale)
                }
                return .failure(.accessDenied)
            }
            return .success((admitted, handle.object))
        } catch {
            return .failure(error)
        }
    }
}
