import NFS3
import NIOCore
import Union

extension NFS3Service {
    /// READ (RFC 1813 §3.3.6). A count above rtmax is answered with rtmax bytes (a short read
    /// the client continues from), as the RFC allows.
    func read(_ args: Read3Args, _ scope: NFS3Scope, _ object: ObjectHandle) -> Read3Res {
        let count = min(Int(args.count), self.limits.maxReadBytes)
        do {
            let (data, isEOF) = try scope.namespace.read(
                object, offset: args.offset, count: count, as: scope.credentials)
            self.didTransfer(.read, data.count)
            return .ok(Read3ResOK(fileAttributes: scope.postOp(object), eof: isEOF, data: ByteBuffer(bytes: data)))
        } catch {
            return .fail(scope.status(error), Read3ResFail(fileAttributes: scope.postOp(object)))
        }
    }
}
