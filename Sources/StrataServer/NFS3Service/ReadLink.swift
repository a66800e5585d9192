import NFS3
import Union

extension NFS3Service {
    /// READLINK (RFC 1813 §3.3.5).
    func readlink(_ args: ReadLink3Args, _ call: ExportCall, _ object: ObjectHandle) -> ReadLink3Res {
        do {
            let link = try call.namespace.readlinkForReply(object, as: call.credentials)
            return .ok(
                ReadLink3ResOK(symlinkAttributes: PostOpAttr(FileAttributes3(link.attributes)), data: link.target))
        } catch {
            return .fail(call.status(error), ReadLink3ResFail(symlinkAttributes: call.postOp(object)))
        }
    }
}
