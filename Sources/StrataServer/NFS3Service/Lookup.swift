import NFS3
import Union

extension NFS3Service {
    /// LOOKUP (RFC 1813 §3.3.3). "." is the directory itself and ".." its parent (the root's
    /// parent is the root), as knfsd answers. One union call gives the object and the
    /// directory's attributes, for the answer whether the name was found or not.
    func lookup(_ args: Lookup3Args, _ call: ExportCall, _ dir: ObjectHandle) -> Lookup3Res {
        let name = args.what.name
        if case .invalid = NFSName(name) {
            // Empty, or with "/" or NUL: no valid name (see NFSStatus3.init(_: UnionError)).
            return .fail(.inval, Lookup3ResFail(dirAttributes: call.postOp(dir)))
        }
        let answer: DirectoryLookup
        do {
            answer = try call.namespace.lookupForReply(dir, name, as: call.credentials)
        } catch {
            return .fail(call.status(error, name: name), Lookup3ResFail(dirAttributes: .absent))
        }
        return Self.lookupResult(answer, call, name: name)
    }

    /// The LOOKUP result of the union's answer (the pool's and the event loop's, `handleInline`).
    static func lookupResult(_ answer: DirectoryLookup, _ call: ExportCall, name: [UInt8]) -> Lookup3Res {
        let dirAttributes = PostOpAttr(FileAttributes3(answer.directory))
        switch answer.found {
        case .success(let found):
            return .ok(
                Lookup3ResOK(
                    object: call.fileHandle3(found.handle),
                    objAttributes: PostOpAttr(FileAttributes3(found.attributes)),
                    dirAttributes: dirAttributes))
        case .failure(let error):
            return .fail(call.status(error, name: name), Lookup3ResFail(dirAttributes: dirAttributes))
        }
    }
}
