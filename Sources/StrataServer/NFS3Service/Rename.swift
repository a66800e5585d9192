import NFS3
import Union

extension NFS3Service {
    /// RENAME (RFC 1813 §3.3.14). Both directories must be in the caller's namespace
    /// (NFS3ERR_XDEV otherwise); both wcc_data are returned in every answer.
    func rename(_ args: Rename3Args, _ call: ExportCall, _ fromDir: ObjectHandle, _ target: SecondHandle) -> Rename3Res {
        let fromBefore = call.preOp(fromDir)
        let toDir: ObjectHandle
        switch target {
        case .resolved(let object):
            toDir = object
        case .refused(let status):
            return .fail(
                status, Rename3ResFail(fromdirWcc: call.wcc(fromBefore, fromDir), todirWcc: .absent))
        }
        let toBefore = call.preOp(toDir)
        func answer(_ status: NFSStatus3?) -> Rename3Res {
            let body = Rename3ResBody(fromdirWcc: call.wcc(fromBefore, fromDir), todirWcc: call.wcc(toBefore, toDir))
            return status.map { .fail($0, body) } ?? .ok(body)
        }
        if call.isReadOnly {
            return answer(.rofs)
        }
        if let status = NFSName(args.from.name).statusForRename ?? NFSName(args.to.name).statusForRename {
            return answer(status)
        }
        do {
            try call.namespace.rename(
                from: fromDir, args.from.name, to: toDir, args.to.name, as: call.credentials)
            return answer(nil)
        } catch {
            return answer(call.status(error, name: args.from.name))
        }
    }
}
