import Foundation
import Glibc
import Logging
import NFS3
import NIOCore
import TestSupport
import Testing
import Union
import XDR

@testable import StrataServer

/// A real union namespace (an upper over one lower, under a fresh temporary directory) behind
/// an `NFS3Service`, driven with encoded arguments as the RPC layer would. File handles on the
/// wire are the server's, with export identifier = namespace index + 1, so a second namespace
/// can stand for another export or client.
final class NFS3Harness {
    let base: String
    let namespaces: [UnionNamespace]
    var service = NFS3Service(writeVerifier: 0x5354_5241_5441_0001)
    var credentials = Credentials.root
    var isReadOnly = false
    let logger = Logger(label: "nfs3-test") { _ in SwiftLogNoOpLogHandler() }

    /// - Parameter lowerFiles: files to create in the lower layer, path → content.
    init(lowerFiles: [String: String] = [:], namespaceCount: Int = 1) throws {
        self.base = try makeTemporaryDirectory("strata-nfs3")
        let lower = self.base + "/lower"
        try FileManager.default.createDirectory(atPath: lower, withIntermediateDirectories: true)
        for (path, content) in lowerFiles {
            let full = lower + "/" + path
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(content.utf8).write(to: URL(fileURLWithPath: full))
        }
        var namespaces: [UnionNamespace] = []
        for index in 0..<namespaceCount {
            namespaces.append(
                try UnionNamespace(
                    upper: self.base + "/upper\(index)", lowers: [lower], logger: self.logger))
        }
        self.namespaces = namespaces
    }

    deinit {
        for namespace in self.namespaces { namespace.close() }
        try? FileManager.default.removeItem(atPath: self.base)
    }

    /// The wire handle of `object` as the harness's exports make it (export `index`).
    func fileHandle(_ object: ObjectHandle, namespace index: Int = 0) -> FileHandle3 {
        FileHandle3(self.export(index).fileHandle(object))
    }

    func root(_ index: Int = 0) -> FileHandle3 {
        self.fileHandle(self.namespaces[index].rootHandle, namespace: index)
    }

    /// Namespace `index` as an export of the server core: its own export identifier.
    func export(_ index: Int) -> ExportCall {
        ExportCall(
            namespace: self.namespaces[index], credentials: self.credentials, isReadOnly: self.isReadOnly,
            exportPath: "/test\(index)", exportID: UInt32(index + 1), clientKey: "127.0.0.1", clientTag: 0,
            logger: self.logger)
    }

    /// Resolves handles as the server core does: the export named by the handle, the object
    /// decoded once.
    func resolve(_ handle: FileHandle3) -> Result<(ExportCall, ObjectHandle), CallRejection> {
        guard let decoded = try? ServerFileHandle(bytes: handle.data) else { return .failure(.badHandle) }
        let index = Int(decoded.exportID) - 1
        guard index >= 0, index < self.namespaces.count else { return .failure(.stale) }
        return .success((self.export(index), decoded.object))
    }

    /// The raw outcome of a call.
    func outcome<Args: XDREncodable>(_ procedure: NFS3Procedure, _ args: Args) -> NFS3Outcome {
        var arguments = xdrEncoded(args)
        return self.service.handle(
            procedure: procedure.rawValue, arguments: &arguments, logger: self.logger, resolve: self.resolve)
    }

    /// The outcome of a call answered as the event loop would (`NFS3Service.handleInline`): nil
    /// when it must go to the pool.
    func inlineOutcome<Args: XDREncodable>(_ procedure: NFS3Procedure, _ args: Args) -> NFS3Outcome? {
        self.service.handleInline(
            procedure: procedure.rawValue, arguments: xdrEncoded(args), resolve: { try? self.resolve($0).get() })
    }

    /// Calls `procedure` and decodes its result, checking the reply is exactly one result.
    func call<Args: XDREncodable, Result: XDRDecodable>(
        _ procedure: NFS3Procedure, _ args: Args, as type: Result.Type = Result.self,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Result {
        let outcome = self.outcome(procedure, args)
        guard case .success(var reply) = outcome else {
            Issue.record("\(procedure.name) answered \(outcome)", sourceLocation: sourceLocation)
            throw HarnessError.notSuccess
        }
        let result = try Result(xdr: &reply)
        #expect(reply.readableBytes == 0, "\(procedure.name) reply has trailing bytes", sourceLocation: sourceLocation)
        return result
    }

    /// The encoded size of the reply of a call (status and body).
    func replyBytes<Args: XDREncodable>(_ procedure: NFS3Procedure, _ args: Args) -> Int {
        guard case .success(let reply) = self.outcome(procedure, args) else { return -1 }
        return reply.readableBytes
    }

    enum HarnessError: Error { case notSuccess, unexpected(String) }

    // MARK: Shortcuts

    func lookup(_ name: String, in dir: FileHandle3? = nil) throws -> Lookup3Res {
        try self.call(.lookup, Lookup3Args(what: DirOpArgs3(dir: dir ?? self.root(), name: Array(name.utf8))))
    }

    /// Looks up `name` and returns its handle, or records an issue.
    func handle(_ name: String, in dir: FileHandle3? = nil) throws -> FileHandle3 {
        guard case .ok(let found) = try self.lookup(name, in: dir) else {
            throw HarnessError.unexpected("lookup \(name) failed")
        }
        return found.object
    }

    func createFile(
        _ name: String, in dir: FileHandle3? = nil, how: CreateHow3 = .guarded(SetAttributes3(mode: 0o644))
    ) throws -> Create3Res {
        try self.call(
            .create, Create3Args(where: DirOpArgs3(dir: dir ?? self.root(), name: Array(name.utf8)), how: how))
    }

    /// READDIR of `dir` (default the root) after `cookie`, with the zero verifier.
    func readdir(_ dir: FileHandle3? = nil, cookie: UInt64 = 0, count: UInt32) throws -> ReadDir3Res {
        try self.call(.readdir, ReadDir3Args(dir: dir ?? self.root(), cookie: cookie, cookieverf: .zero, count: count))
    }

    func symlink(
        _ name: String, to target: [UInt8], in dir: FileHandle3? = nil, attributes: SetAttributes3 = .init()
    ) throws -> Symlink3Res {
        try self.call(
            .symlink,
            Symlink3Args(
                where: DirOpArgs3(dir: dir ?? self.root(), name: Array(name.utf8)),
                symlink: SymlinkData3(symlinkAttributes: attributes, symlinkData: target)))
    }

    func rename(_ from: String, in fromDir: FileHandle3, to: String, in toDir: FileHandle3) throws -> Rename3Res {
        try self.call(
            .rename,
            Rename3Args(
                from: DirOpArgs3(dir: fromDir, name: Array(from.utf8)), to: DirOpArgs3(dir: toDir, name: Array(to.utf8))
            ))
    }

    func attributes(_ handle: FileHandle3) throws -> FileAttributes3 {
        guard case .ok(let result) = try self.call(.getattr, GetAttr3Args(object: handle), as: GetAttr3Res.self) else {
            throw HarnessError.unexpected("getattr failed")
        }
        return result.objAttributes
    }
}

extension WccData {
    /// Both halves present, as every mutating reply on a live object must carry.
    var isComplete: Bool { self.before.attributes != nil && self.after.attributes != nil }
}
