import NFS3
import Union

extension NFS3Service {
    /// RENAME (RFC 1813 §3.3.14). Both directories must be in the caller's namespace
    /// (NFS3ERR_XDEV otherwise); both wcc_data are returned in every answer (on success taken by
    /// the union with the change).
    func rename(_ args: Rename3Args, _ call: ExportCall, _ fromDir: ObjectHandle, _ target: SecondHandle) -> Rename3Res
    {
        let toDir: ObjectHandle
        switch target {
        case .resolved(let object):
            toDir = object
        case .refused(let status):
            return .fail(
                status, Rename3ResFail(fromdirWcc: call.wcc(call.preOp(fromDir), fromDir), todirWcc: .absent))
        }
        // A refused or failed rename changed nothing: its wcc_data is read afterwards.
        func refuse(_ status: NFSStatus3) -> Rename3Res {
            .fail(
                status,
                Rename3ResBody(
                    fromdirWcc: call.wcc(call.preOp(fromDir), fromDir), todirWcc: call.wcc(call.preOp(toDir), toDir)))
        }
        if call.isReadOnly {
            return refuse(.rofs)
        }
        if let status = NFSName(args.from.name).statusForRename ?? NFSName(args.to.name).statusForRename {
            return refuse(status)
        }
        do {
            // Both wcc_data as the union took them with the change.
            let change = try call.namespace.renameChange(
                from: fromDir, args.from.name, to: toDir, args.to.name, as: call.credentials)
            return .ok(Rename3ResBody(fromdirWcc: call.wcc(change.directory), todirWcc: call.wcc(change.toDirectory)))
        } catch {
            return refuse(call.status(error, name: args.from.name))
        }
    }
}
