import NFS3
import Union

extension NFS3Service {
    /// COMMIT (RFC 1813 §3.3.21): makes the file's UNSTABLE writes durable and returns the
    /// write verifier the client compares with the one its WRITEs got.
    func commit(_ args: Commit3Args, _ call: ExportCall, _ object: ObjectHandle) -> Commit3Res {
        let before = call.preOp(object)
        do {
            try call.namespace.commit(object, offset: args.offset, count: UInt64(args.count))
            return .ok(Commit3ResOK(fileWcc: call.wcc(before, object), verf: self.writeVerifier))
        } catch {
            return .fail(call.status(error), Commit3ResFail(fileWcc: call.wcc(before, object)))
        }
    }
}
