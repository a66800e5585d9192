import NFS3
import Union

extension NFS3Service {
    /// LOOKUP (RFC 1813 §3.3.3). "." is the directory itself and ".." its parent (the root's
    /// parent is the root), as knfsd answers.
    func lookup(_ args: Lookup3Args, _ scope: NFS3Scope, _ dir: ObjectHandle) -> Lookup3Res {
        let name = args.what.name
        do throws(UnionError) {
            let found: (ObjectHandle, Attributes)
            switch NFSName(name) {
            case .dot:
                let attributes = try scope.namespace.getattr(dir)
                guard attributes.type == .directory else { throw UnionError.notDirectory }
                // Searching "." needs the same permission as any name in the directory.
                guard try scope.namespace.access(dir, .lookup, as: scope.credentials).contains(.lookup) else {
                    throw UnionError.accessDenied
                }
                found = (dir, attributes)
            case .dotDot:
                found = try scope.namespace.lookupParent(dir, as: scope.credentials)
            case .invalid:
                // Empty, or with "/" or NUL: no valid name (see NFS3Scope.status(for:)).
                return .fail(.inval, Lookup3ResFail(dirAttributes: scope.postOp(dir)))
            case .tooLong, .regular:
                found = try scope.namespace.lookup(dir, name, as: scope.credentials)
            }
            return .ok(
                Lookup3ResOK(
                    object: scope.fileHandle(found.0), objAttributes: PostOpAttr(FileAttributes3(found.1)),
                    dirAttributes: scope.postOp(dir)))
        } catch {
            return .fail(scope.status(error, name: name), Lookup3ResFail(dirAttributes: scope.postOp(dir)))
        }
    }
}
