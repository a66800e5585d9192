import NFS3
import Union

extension NFS3Service {
    /// SETATTR (RFC 1813 §3.3.2). With a guard, the union compares the object's ctime and
    /// answers `guardMismatch` (NFS3ERR_NOT_SYNC) without changing anything.
    /// The object's wcc_data is the union's, taken with the change (read afterwards when nothing
    /// changed).
    func setattr(_ args: SetAttr3Args, _ call: ExportCall, _ object: ObjectHandle) -> SetAttr3Res {
        if call.isReadOnly {
            return .fail(.rofs, SetAttr3ResFail(objWcc: call.wcc(call.preOp(object), object)))
        }
        do {
            let change = try call.namespace.setattrChange(
                object, SetAttributes(args.newAttributes), guardCtime: args.guardCtime.map(Timespec.init),
                as: call.credentials)
            return .ok(SetAttr3ResOK(objWcc: call.wcc(change.object)))
        } catch {
            return .fail(call.status(error), SetAttr3ResFail(objWcc: call.wcc(call.preOp(object), object)))
        }
    }
}
