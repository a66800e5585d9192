import NFS3
import Union

extension NFS3Service {
    /// REMOVE (RFC 1813 §3.3.12). A name that exists in a lower layer is whited out by the union.
    func remove(_ args: Remove3Args, _ call: ExportCall, _ dir: ObjectHandle) -> Remove3Res {
        call.removeEntry(in: dir, named: args.object.name) { () throws(UnionError) in
            try call.namespace.remove(in: dir, args.object.name, as: call.credentials)
        }
    }
}

extension ExportCall {
    /// The common shape of REMOVE and RMDIR: refusals, pre-op attributes, the removal, and the
    /// directory's wcc_data in every answer.
    func removeEntry(
        in dir: ObjectHandle, named name: [UInt8], _ remove: () throws(UnionError) -> Void
    ) -> Remove3Res {
        let before = self.preOp(dir)
        if self.isReadOnly {
            return .fail(.rofs, Remove3ResFail(dirWcc: self.wcc(before, dir)))
        }
        if let status = NFSName(name).statusForRemoval {
            return .fail(status, Remove3ResFail(dirWcc: self.wcc(before, dir)))
        }
        do {
            try remove()
            return .ok(Remove3ResOK(dirWcc: self.wcc(before, dir)))
        } catch {
            return .fail(self.status(error, name: name), Remove3ResFail(dirWcc: self.wcc(before, dir)))
        }
    }
}
