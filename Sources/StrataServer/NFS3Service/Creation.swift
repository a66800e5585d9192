import NFS3
import Union

extension ExportCall {
    /// The common shape of CREATE, MKDIR, SYMLINK and MKNOD (RFC 1813 §3.3.8–11): refuse on a
    /// read-only export and for names that cannot be created, read the directory's pre-op
    /// attributes, create, and answer with the new object's handle and attributes plus the
    /// directory's wcc_data — on failure too.
    func createObject(
        in dir: ObjectHandle,
        named name: [UInt8],
        _ make: () throws(UnionError) -> (ObjectHandle, Attributes)
    ) -> Create3Res {
        let before = self.preOp(dir)
        if self.isReadOnly {
            return .fail(.rofs, Create3ResFail(dirWcc: self.wcc(before, dir)))
        }
        if let status = NFSName(name).statusForCreation {
            return .fail(status, Create3ResFail(dirWcc: self.wcc(before, dir)))
        }
        do {
            let (object, attributes) = try make()
            return .ok(
                Create3ResOK(
                    obj: PostOpFileHandle3(self.fileHandle3(object)),
                    objAttributes: PostOpAttr(FileAttributes3(attributes)),
                    dirWcc: self.wcc(before, dir)))
        } catch {
            return .fail(self.status(error, name: name), Create3ResFail(dirWcc: self.wcc(before, dir)))
        }
    }
}

extension NFS3Service {
    /// CREATE (RFC 1813 §3.3.8). EXCLUSIVE keeps the verifier in the union's sidecar: a
    /// retransmission with the same verifier finds the file it created and succeeds, another
    /// verifier gets NFS3ERR_EXIST. The client then sets the attributes with SETATTR.
    func create(_ args: Create3Args, _ call: ExportCall, _ dir: ObjectHandle) -> Create3Res {
        let mode: CreateMode
        let attributes: SetAttributes
        switch args.how {
        case .unchecked(let sattr):
            mode = .unchecked
            attributes = SetAttributes(sattr)
        case .guarded(let sattr):
            mode = .guarded
            attributes = SetAttributes(sattr)
        case .exclusive(let verifier):
            mode = .exclusive(verifier: verifier.rawValue)
            attributes = SetAttributes()
        }
        return call.createObject(in: dir, named: args.where.name) { () throws(UnionError) in
            try call.namespace.create(
                in: dir, args.where.name, mode: mode, attributes: attributes, as: call.credentials)
        }
    }

    /// MKDIR (RFC 1813 §3.3.9).
    func mkdir(_ args: MkDir3Args, _ call: ExportCall, _ dir: ObjectHandle) -> MkDir3Res {
        call.createObject(in: dir, named: args.where.name) { () throws(UnionError) in
            try call.namespace.mkdir(
                in: dir, args.where.name, attributes: SetAttributes(args.attributes), as: call.credentials)
        }
    }

    /// SYMLINK (RFC 1813 §3.3.10). The target is stored as given, bytes and all.
    func symlink(_ args: Symlink3Args, _ call: ExportCall, _ dir: ObjectHandle) -> Symlink3Res {
        call.createObject(in: dir, named: args.where.name) { () throws(UnionError) in
            try call.namespace.symlink(
                in: dir, args.where.name, target: args.symlink.symlinkData,
                attributes: SetAttributes(args.symlink.symlinkAttributes), as: call.credentials)
        }
    }

    /// MKNOD (RFC 1813 §3.3.11): character and block devices, sockets and FIFOs; any other
    /// type is NFS3ERR_BADTYPE.
    func mknod(_ args: MkNod3Args, _ call: ExportCall, _ dir: ObjectHandle) -> MkNod3Res {
        let type: FileType
        let rdev: DeviceNumber
        let sattr: SetAttributes3
        switch args.what {
        case .chr(let device):
            (type, rdev, sattr) = (
                .characterDevice, DeviceNumber(major: device.spec.specdata1, minor: device.spec.specdata2),
                device.devAttributes
            )
        case .blk(let device):
            (type, rdev, sattr) = (
                .blockDevice, DeviceNumber(major: device.spec.specdata1, minor: device.spec.specdata2),
                device.devAttributes
            )
        case .sock(let attributes):
            (type, rdev, sattr) = (.socket, DeviceNumber(major: 0, minor: 0), attributes)
        case .fifo(let attributes):
            (type, rdev, sattr) = (.fifo, DeviceNumber(major: 0, minor: 0), attributes)
        case .otherType:
            let before = call.preOp(dir)
            let status: NFSStatus3 = call.isReadOnly ? .rofs : .badtype
            return .fail(status, MkNod3ResFail(dirWcc: call.wcc(before, dir)))
        }
        return call.createObject(in: dir, named: args.where.name) { () throws(UnionError) in
            try call.namespace.mknod(
                in: dir, args.where.name, type: type, rdev: rdev, attributes: SetAttributes(sattr),
                as: call.credentials)
        }
    }
}
