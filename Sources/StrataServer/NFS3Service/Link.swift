import NFS3
import Union

extension NFS3Service {
    /// LINK (RFC 1813 §3.3.15). The directory must be in the file's namespace (NFS3ERR_XDEV
    /// otherwise). A file only in a lower layer is copied up first by the union.
    func link(_ args: Link3Args, _ call: ExportCall, _ file: ObjectHandle, _ directory: SecondHandle) -> Link3Res {
        let dir: ObjectHandle
        switch directory {
        case .resolved(let object):
            dir = object
        case .refused(let status):
            return .fail(status, Link3ResFail(fileAttributes: call.postOp(file), linkdirWcc: .absent))
        }
        let before = call.preOp(dir)
        if call.isReadOnly {
            return .fail(.rofs, Link3ResFail(fileAttributes: call.postOp(file), linkdirWcc: call.wcc(before, dir)))
        }
        if let status = NFSName(args.link.name).statusForCreation {
            return .fail(status, Link3ResFail(fileAttributes: call.postOp(file), linkdirWcc: call.wcc(before, dir)))
        }
        do {
            let change = try call.namespace.linkChange(file, in: dir, args.link.name, as: call.credentials)
            return .ok(
                Link3ResOK(
                    fileAttributes: PostOpAttr(change.attributes.map(FileAttributes3.init)),
                    linkdirWcc: call.wcc(change.directory)))
        } catch {
            return .fail(
                call.status(error, name: args.link.name),
                Link3ResFail(fileAttributes: call.postOp(file), linkdirWcc: call.wcc(before, dir)))
        }
    }
}
