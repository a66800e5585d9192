import NFS3
import NIOCore
import Union

extension NFS3Service {
    /// WRITE (RFC 1813 §3.3.7). `committed` is what the union really did (never less than
    /// asked); `verf` is this server instance's write verifier, so a client holding UNSTABLE
    /// data resends it after a restart.
    func write(_ args: Write3Args, _ call: ExportCall, _ object: ObjectHandle) -> Write3Res {
        let before = call.preOp(object)
        if call.isReadOnly {
            return .fail(.rofs, Write3ResFail(fileWcc: call.wcc(before, object)))
        }
        // RFC 1813 §3.3.7: count is the number of bytes of data; a count beyond the data sent
        // cannot be written (knfsd rejects the call), a smaller count writes only that much.
        guard Int(args.count) <= args.data.readableBytes else {
            call.logger.info(
                "WRITE count exceeds its data",
                metadata: ["count": "\(args.count)", "data": "\(args.data.readableBytes)"])
            return .fail(.inval, Write3ResFail(fileWcc: call.wcc(before, object)))
        }
        let data = args.data.getSlice(at: args.data.readerIndex, length: Int(args.count)) ?? ByteBuffer()
        do {
            let (written, committed) = try data.withUnsafeReadableBytes { (bytes) throws(UnionError) in
                try call.namespace.write(
                    object, offset: args.offset, data: bytes, stable: StableHow(args.stable), as: call.credentials)
            }
            self.didTransfer(.write, written)
            return .ok(
                Write3ResOK(
                    fileWcc: call.wcc(before, object), count: UInt32(clamping: written),
                    committed: StableHow3(committed), verf: self.writeVerifier))
        } catch {
            return .fail(call.status(error), Write3ResFail(fileWcc: call.wcc(before, object)))
        }
    }
}
