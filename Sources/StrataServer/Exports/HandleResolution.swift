import Foundation
import SunRPC
import Union

/// Handle resolution: a file handle from the wire, checked against the namespace of its caller.
extension ExportRegistry {
    /// Resolves a file handle from the wire for the caller: the export must still exist, the
    /// caller must be admitted, and the handle must name the caller's own namespace.
    public func resolve(
        fileHandle bytes: [UInt8], for call: RPCCallContext
    ) -> Result<(ExportCall, ObjectHandle), CallRejection> {
        self.resolve(fileHandle: bytes, for: call, mayBlock: true)
    }

    /// `resolve` for a caller that must not block (an event loop answering from the caches):
    /// nil when the handle's namespace is not open, or on any refusal (the blocking `resolve`
    /// then answers it, with its log line).
    public func resolveWithoutBlocking(
        fileHandle bytes: [UInt8], for call: RPCCallContext
    ) -> (ExportCall, ObjectHandle)? {
        try? self.resolve(fileHandle: bytes, for: call, mayBlock: false).get()
    }

    func resolve(
        fileHandle bytes: [UInt8], for call: RPCCallContext, mayBlock: Bool
    ) -> Result<(ExportCall, ObjectHandle), CallRejection> {
        let handle: ServerFileHandle
        do {
            handle = try ServerFileHandle(bytes: bytes)
        } catch {
            return .failure(.badHandle)
        }
        let found = self.state.withReadLock { state in
            state.exportsByID[handle.exportID].map {
                ($0, state.configuration.clientKeys, self.image(of: $0, in: state))
            }
        }
        guard let (export, clientKeys, image) = found else {
            return .failure(.stale)
        }
        do {
            let admitted = try self.admit(
                export: export, call: call, create: false, known: (clientKeys, image), mayBlock: mayBlock)
            guard admitted.clientTag == handle.clientTag else {
                // Either another client's handle (refused) or one of this client's from before a
                // reset, from before its rule changed between ro and rw, or of another image
                // version than the one it is on now (stale).
                let versions = 1..<max(2, image?.nextNumber ?? 2)
                if versions.contains(where: { self.sharedTag(version: $0) == handle.clientTag }) {
                    return .failure(.stale)
                }
                guard export.hasPerClientUpper else { return .failure(.accessDenied) }
                let generations = self.state.withReadLock { $0.generations[admitted.clientKey] } ?? 0
                for old in 0...generations {
                    for version in versions
                    where self.clientTag(
                        export: export, clientKey: admitted.clientKey, generation: old, version: version)
                        == handle.clientTag
                    {
                        return .failure(.stale)
                    }
                }
                return .failure(.accessDenied)
            }
            return .success((admitted, handle.object))
        } catch {
            return .failure(error)
        }
    }
}
