import NFS3
import Union

extension NFS3Service {
    /// LINK (RFC 1813 §3.3.15). The directory must be in the file's namespace (NFS3ERR_XDEV
    /// otherwise). A file only in a lower layer is copied up first by the union.
    func link(_ args: Link3Args, _ scope: NFS3Scope, _ file: ObjectHandle) -> Link3Res {
        let dir: ObjectHandle
        switch scope.resolveSecond(args.link.dir) {
        case .resolved(let object):
            dir = object
        case .refused(let status):
            return .fail(status, Link3ResFail(fileAttributes: scope.postOp(file), linkdirWcc: .absent))
        }
        let before = scope.preOp(dir)
        if scope.isReadOnly {
            return .fail(.rofs, Link3ResFail(fileAttributes: scope.postOp(file), linkdirWcc: scope.wcc(before, dir)))
        }
        if let status = NFSName(args.link.name).statusForCreation {
            return .fail(status, Link3ResFail(fileAttributes: scope.postOp(file), linkdirWcc: scope.wcc(before, dir)))
        }
        do {
            let attributes = try scope.namespace.link(file, in: dir, args.link.name, as: scope.credentials)
            return .ok(
                Link3ResOK(fileAttributes: PostOpAttr(FileAttributes3(attributes)), linkdirWcc: scope.wcc(before, dir)))
        } catch {
            return .fail(
                scope.status(error, name: args.link.name),
                Link3ResFail(fileAttributes: scope.postOp(file), linkdirWcc: scope.wcc(before, dir)))
        }
    }
}
