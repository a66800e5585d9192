import NFS3
import Union

extension NFS3Service {
    /// GETATTR (RFC 1813 §3.3.1).
    func getattr(_ args: GetAttr3Args, _ call: ExportCall, _ object: ObjectHandle) -> GetAttr3Res {
        do {
            return .ok(GetAttr3ResOK(objAttributes: FileAttributes3(try call.namespace.getattr(object))))
        } catch {
            return .fail(call.status(error), NFS3Void())
        }
    }
}
