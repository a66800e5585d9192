import NFS3
import Union

extension NFS3Service {
    /// READLINK (RFC 1813 §3.3.5).
    func readlink(_ args: ReadLink3Args, _ scope: NFS3Scope, _ object: ObjectHandle) -> ReadLink3Res {
        do {
            let target = try scope.namespace.readlink(object, as: scope.credentials)
            return .ok(ReadLink3ResOK(symlinkAttributes: scope.postOp(object), data: target))
        } catch {
            return .fail(scope.status(error), ReadLink3ResFail(symlinkAttributes: scope.postOp(object)))
        }
    }
}
