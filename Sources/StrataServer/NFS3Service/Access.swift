import NFS3
import Union

extension NFS3Service {
    /// ACCESS (RFC 1813 §3.3.4): what the later operation would allow. The union answers with
    /// the kernel's rules for the caller; a read-only export strips the bits that change things.
    func access(_ args: Access3Args, _ scope: NFS3Scope, _ object: ObjectHandle) -> Access3Res {
        do {
            let requested = AccessMask(rawValue: args.access & AccessMask.all.rawValue)
            var granted = try scope.namespace.access(object, requested, as: scope.credentials)
            if scope.isReadOnly {
                granted.subtract([.modify, .extend, .delete])
            }
            return .ok(Access3ResOK(objAttributes: scope.postOp(object), access: granted.rawValue))
        } catch {
            return .fail(scope.status(error), Access3ResFail(objAttributes: scope.postOp(object)))
        }
    }
}
