import NFS3
import SunRPC
import Union

/// The server core as NFS3Program sees it: file handles resolved for the calling client
/// (`ExportRegistry.resolve(fileHandle:for:)`).
extension ExportRegistry: NFS3HandleResolver {}

extension MeteredProgram {
    init(nfs: NFS3Program, metrics: ServerMetrics) {
        var names: [UInt32: String] = [:]
        for procedure in NFS3Procedure.allCases { names[procedure.rawValue] = procedure.name }
        // Every NFSv3 result but NULL's starts with nfsstat3.
        self.init(inner: nfs, metrics: metrics, name: "nfs", procedureNames: names, resultsStartWithStatus: { $0 != 0 })
    }
}
