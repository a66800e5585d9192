import NFS3
import SunRPC
import Union

/// The server core as NFS3Program sees it: file handles resolved for the calling client.
extension ExportRegistry: NFS3HandleResolver {
    public func resolveNFS3(fileHandle: [UInt8], for call: RPCCallContext) -> Result<(NFS3Export, ObjectHandle), NFS3HandleRejection> {
        switch self.resolve(fileHandle: fileHandle, for: call) {
        case .success(let (admitted, object)):
            return .success((admitted.nfs3Export, object))
        case .failure(let rejection):
            switch rejection {
            case .badHandle: return .failure(.badHandle)
            case .stale, .noSuchExport, .notDirectory: return .failure(.stale)
            case .accessDenied, .clientLimitReached: return .failure(.accessDenied)
            case .tooWeak: return .failure(.tooWeak)
            case .unsupportedCredential: return .failure(.unsupportedCredential)
            case .layerUnavailable(let why): return .failure(.layerUnavailable(why))
            }
        }
    }
}

extension ExportCall {
    var nfs3Export: NFS3Export {
        let exportID = self.export.exportID
        let namespaceID = self.namespaceID
        return NFS3Export(
            namespace: self.namespace, credentials: self.credentials, isReadOnly: self.isReadOnly,
            exportPath: self.export.path, clientKey: self.clientKey,
            fileHandle: { ServerFileHandle(exportID: exportID, namespaceID: namespaceID, object: $0).bytes })
    }
}

extension MeteredProgram {
    init(nfs: NFS3Program, metrics: ServerMetrics) {
        var names: [UInt32: String] = [:]
        for procedure in NFS3Procedure.allCases { names[procedure.rawValue] = procedure.name }
        // Every NFSv3 result but NULL's starts with nfsstat3.
        self.init(inner: nfs, metrics: metrics, name: "nfs", procedureNames: names, resultsStartWithStatus: { $0 != 0 })
    }
}
