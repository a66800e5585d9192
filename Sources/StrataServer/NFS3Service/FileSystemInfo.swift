import NFS3
import Union

extension NFS3Service {
    /// FSSTAT (RFC 1813 §3.3.18): the union's statvfs; invarsec 0 since it can change any time.
    func fsstat(_ args: FSStat3Args, _ call: ExportCall, _ object: ObjectHandle) -> FSStat3Res {
        do {
            let stats = try call.namespace.fsstat(object)
            return .ok(
                FSStat3ResOK(
                    objAttributes: call.postOp(object), tbytes: stats.totalBytes, fbytes: stats.freeBytes,
                    abytes: stats.availableBytes, tfiles: stats.totalFiles, ffiles: stats.freeFiles,
                    afiles: stats.availableFiles, invarsec: 0))
        } catch {
            return .fail(call.status(error), FSStat3ResFail(objAttributes: call.postOp(object)))
        }
    }

    /// FSINFO (RFC 1813 §3.3.19): 1 MiB reads and writes, nanosecond times, hard and symbolic
    /// links, homogeneous PATHCONF, and SETATTR to client times.
    func fsinfo(_ args: FSInfo3Args, _ call: ExportCall, _ object: ObjectHandle) -> FSInfo3Res {
        do {
            let attributes = try call.namespace.getattr(object)
            let properties: FSInfoProperties3 = [.link, .symlink, .homogeneous, .canSetTime]
            return .ok(
                FSInfo3ResOK(
                    objAttributes: PostOpAttr(FileAttributes3(attributes)),
                    rtmax: UInt32(clamping: self.limits.maxReadBytes),
                    rtpref: UInt32(clamping: self.limits.maxReadBytes),
                    rtmult: 4096,
                    wtmax: UInt32(clamping: self.limits.maxWriteBytes),
                    wtpref: UInt32(clamping: self.limits.maxWriteBytes),
                    wtmult: 4096,
                    dtpref: UInt32(clamping: self.limits.preferredReaddirBytes),
                    maxfilesize: UInt64(Int64.max),
                    timeDelta: NFSTime3(seconds: 0, nseconds: 1),
                    properties: properties.rawValue))
        } catch {
            return .fail(call.status(error), FSInfo3ResFail(objAttributes: .absent))
        }
    }

    /// PATHCONF (RFC 1813 §3.3.20): POSIX limits of the layers (Linux: NAME_MAX 255, long
    /// names refused rather than truncated, chown restricted to root, case preserved).
    func pathconf(_ args: PathConf3Args, _ call: ExportCall, _ object: ObjectHandle) -> PathConf3Res {
        do {
            let attributes = try call.namespace.getattr(object)
            return .ok(
                PathConf3ResOK(
                    objAttributes: PostOpAttr(FileAttributes3(attributes)),
                    // ext4's EXT4_LINK_MAX; the upper layer's file system may allow more.
                    linkmax: 65000,
                    nameMax: UInt32(NFSName.maxBytes),
                    noTrunc: true,
                    chownRestricted: true,
                    caseInsensitive: false,
                    casePreserving: true))
        } catch {
            return .fail(call.status(error), PathConf3ResFail(objAttributes: .absent))
        }
    }
}
