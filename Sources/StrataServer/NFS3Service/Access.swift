import NFS3
import Union

extension NFS3Service {
    /// ACCESS (RFC 1813 §3.3.4): what the later operation would allow. The union answers with
    /// the kernel's rules for the caller; a read-only export strips the bits that change things.
    func access(_ args: Access3Args, _ call: ExportCall, _ object: ObjectHandle) -> Access3Res {
        do {
            let requested = AccessMask(rawValue: args.access & AccessMask.all.rawValue)
            return self.accessResult(try call.namespace.accessForReply(object, requested, as: call.credentials), call)
        } catch {
            return .fail(call.status(error), Access3ResFail(objAttributes: call.postOp(object)))
        }
    }

    /// The reply to a union access check; a read-only export strips the bits that change things.
    func accessResult(_ check: AccessCheck, _ call: ExportCall) -> Access3Res {
        var granted = check.granted
        if call.isReadOnly {
            granted.subtract([.modify, .extend, .delete])
        }
        return .ok(Access3ResOK(objAttributes: PostOpAttr(FileAttributes3(check.attributes)), access: granted.rawValue))
    }
}
