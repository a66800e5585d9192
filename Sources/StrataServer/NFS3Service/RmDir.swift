import NFS3
import Union

extension NFS3Service {
    /// RMDIR (RFC 1813 §3.3.13). The union checks that the merged view is empty.
    func rmdir(_ args: RmDir3Args, _ call: ExportCall, _ dir: ObjectHandle) -> RmDir3Res {
        call.removeEntry(in: dir, named: args.object.name) { () throws(UnionError) in
            try call.namespace.rmdir(in: dir, args.object.name, as: call.credentials)
        }
    }
}
