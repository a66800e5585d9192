import NFS3
import Union

extension NFS3Service {
    /// SETATTR (RFC 1813 §3.3.2). With a guard, the union compares the object's ctime and
    /// answers `guardMismatch` (NFS3ERR_NOT_SYNC) without changing anything.
    func setattr(_ args: SetAttr3Args, _ call: ExportCall, _ object: ObjectHandle) -> SetAttr3Res {
        let before = call.preOp(object)
        if call.isReadOnly {
            return .fail(.rofs, SetAttr3ResFail(objWcc: call.wcc(before, object)))
        }
        do {
            let after = try call.namespace.setattr(
                object, SetAttributes(args.newAttributes), guardCtime: args.guardCtime.map(Timespec.init),
                as: call.credentials)
            return .ok(SetAttr3ResOK(objWcc: WccData(before: before, after: PostOpAttr(FileAttributes3(after)))))
        } catch {
            return .fail(call.status(error), SetAttr3ResFail(objWcc: call.wcc(before, object)))
        }
    }
}
