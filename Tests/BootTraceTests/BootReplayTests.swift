import Foundation
import NFS3
import NIOCore
import Synchronization
import Testing
import XDR

@testable import BootTrace

/// A server in memory for the replay's scheduling: handles are the paths' bytes; READs of
/// /bin/big wait (bounded) until two of them are in flight, so a replay that serialized calls
/// the recording overlapped fails.
final class FakeServer: BootReplayTransport {
    struct Log {
        var events: [(String, Int)] = []  // ("send"|"done", sequence of the call by its arguments)
        var files: Set<String> = ["/", "/etc", "/etc/passwd", "/bin", "/bin/big", "/var"]
        var written: [String: [UInt8]] = [:]
        var bigReadsInFlight = 0
        var sawTwoBigReads = false
    }
    let log = Mutex(Log())

    func call(program: UInt32, version: UInt32, procedure: UInt32, arguments: ByteBuffer) async throws -> ByteBuffer {
        var a = arguments
        var reply = ByteBuffer()
        if program == Mount.program {
            MountRes3.ok(MountRes3OK(fhandle: FileHandle3(Array("/".utf8)), authFlavors: [1])).encode(xdr: &reply)
            return reply
        }
        let proc = NFS3Procedure(rawValue: procedure)!
        func path(_ h: FileHandle3) -> String { String(decoding: h.data, as: UTF8.self) }
        func exists(_ p: String) -> Bool { self.log.withLock { $0.files.contains(p) } }
        func status(_ s: NFSStatus3) { reply.writeXDR(s.rawValue) }
        switch proc {
        case .getattr:
            let p = path(try GetAttr3Args(xdr: &a).object)
            self.log.withLock { $0.events.append(("send GETATTR \(p)", 0)) }
            if exists(p) { status(.ok); FileAttributes3.sample.encode(xdr: &reply) } else { status(.stale) }
        case .lookup:
            let args = try Lookup3Args(xdr: &a)
            let p = BootPath.join(path(args.what.dir), BootPath.encode(args.what.name))
            if exists(p) {
                Lookup3Res.ok(
                    Lookup3ResOK(
                        object: FileHandle3(Array(p.utf8)), objAttributes: PostOpAttr(nil),
                        dirAttributes: PostOpAttr(nil))
                ).encode(xdr: &reply)
            } else {
                Lookup3Res.fail(.noent, Lookup3ResFail(dirAttributes: PostOpAttr(nil))).encode(xdr: &reply)
            }
        case .read:
            let args = try Read3Args(xdr: &a)
            let p = path(args.file)
            self.log.withLock { $0.events.append(("send READ \(p) \(args.offset)", 0)) }
            if p == "/bin/big" {
                self.log.withLock {
                    $0.bigReadsInFlight += 1
                    if $0.bigReadsInFlight >= 2 { $0.sawTwoBigReads = true }
                }
                let deadline = ContinuousClock.now + .seconds(5)
                while !self.log.withLock({ $0.sawTwoBigReads }) && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(2))
                }
                self.log.withLock { $0.bigReadsInFlight -= 1 }
            }
            self.log.withLock { $0.events.append(("done READ \(p) \(args.offset)", 0)) }
            Read3Res.ok(Read3ResOK(fileAttributes: PostOpAttr(nil), eof: false, data: ByteBuffer(bytes: [1, 2, 3, 4])))
                .encode(xdr: &reply)
        case .create:
            let args = try Create3Args(xdr: &a)
            let p = BootPath.join(path(args.where.dir), BootPath.encode(args.where.name))
            self.log.withLock { _ = $0.files.insert(p) }
            Create3Res.ok(
                Create3ResOK(
                    obj: PostOpFileHandle3(FileHandle3(Array(p.utf8))), objAttributes: PostOpAttr(nil),
                    dirWcc: WccData(before: PreOpAttr(nil), after: PostOpAttr(nil)))
            ).encode(xdr: &reply)
        case .write:
            let args = try Write3Args(xdr: &a)
            let p = path(args.file)
            var data = args.data
            let bytes = data.readBytes(length: data.readableBytes) ?? []
            self.log.withLock { $0.written[p, default: []] += bytes }
            Write3Res.ok(
                Write3ResOK(
                    fileWcc: WccData(before: PreOpAttr(nil), after: PostOpAttr(nil)), count: args.count,
                    committed: .fileSync, verf: WriteVerifier3(rawValue: 1))
            ).encode(xdr: &reply)
        default:
            status(.notsupp)
        }
        return reply
    }
}

extension FileAttributes3 {
    static let sample = FileAttributes3(
        type: .reg, mode: 0o644, nlink: 1, uid: 0, gid: 0, size: 4, used: 4, rdev: SpecData3(), fsid: 1, fileid: 2,
        atime: NFSTime3(), mtime: NFSTime3(), ctime: NFSTime3())
}

@Suite struct BootReplayTests {
    static let script = """
        # strata boot script 1
        0.000 - MNT = OK
        1.000 - LOOKUP / bin = OK
        1.100 - LOOKUP /bin big = OK
        2.000 - READ /bin/big 0 4 = OK
        2.001 1 READ /bin/big 4 4 = OK
        3.000 - LOOKUP / etc = OK
        3.100 - LOOKUP /etc nothere = NOENT
        3.200 - LOOKUP /etc passwd = OK
        3.300 - GETATTR /etc/passwd = OK
        4.000 - LOOKUP / var = OK
        4.100 - CREATE /var log guarded mode=644 = OK
        4.200 - WRITE /var/log 0 40 filesync = OK
        4.300 - GETATTR /var/log = OK
        """

    @Test func replayResolvesPathsKeepsTheRecordedOrderAndOverlap() async throws {
        let server = FakeServer()
        let replay = BootReplay(script: try BootScript.parse(Self.script), export: "/diskless", clientTag: "client-7")
        let result = await replay.run(nfs: server, mount: server)
        #expect(result.failures.isEmpty, "\(result.failures)")
        #expect(result.latencies.count == 13)
        #expect(result.bytesWritten == 40)
        let log = server.log.withLock { $0 }
        // The two READs the recording overlapped were in flight together here.
        #expect(log.sawTwoBigReads)
        // GETATTR /etc/passwd started after both READs were done (it did in the recording).
        let events = log.events.map(\.0)
        let getattr = try #require(events.firstIndex(of: "send GETATTR /etc/passwd"))
        #expect(events.firstIndex(of: "done READ /bin/big 0")! < getattr)
        #expect(events.firstIndex(of: "done READ /bin/big 4")! < getattr)
        #expect(log.written["/var/log"] == BootReplay.payload(tag: "client-7", offset: 0, count: 40))
    }

    @Test func aDifferentAnswerIsAFailureNamingTheLine() async throws {
        let server = FakeServer()
        server.log.withLock { _ = $0.files.remove("/etc/passwd") }
        let replay = BootReplay(script: try BootScript.parse(Self.script), export: "/diskless", clientTag: "c")
        let result = await replay.run(nfs: server, mount: server)
        // LOOKUP answered NOENT (recorded OK), and the GETATTR that needed its handle was not sent.
        #expect(result.failures.map(\.line) == [9, 10])
        #expect(result.failures[0].message.contains("answered NOENT, recorded OK"))
        #expect(result.failures[1].message.contains("no handle for /etc/passwd"))
    }

    @Test func stormRunsEveryClientAndAddsUp() async throws {
        let servers = (0..<3).map { _ in FakeServer() }
        let report = await BootStorm.run(
            script: try BootScript.parse(Self.script), clients: 3, export: { "/c\($0)" },
            connect: { client in (servers[client], servers[client]) })
        #expect(report.clients == 3)
        #expect(report.errors == 0, "\(report.firstErrors)")
        #expect(report.calls == 39)
        #expect(report.bytesWritten == 120)
        #expect(report.operations["READ"]?.calls == 6 && report.operations["LOOKUP"]?.calls == 18)
        #expect(report.bootP50Seconds <= report.bootP99Seconds && report.bootP99Seconds <= report.allBootedSeconds)
        // Where the boots went adds up to a mean boot, and names the operations the script has.
        let accounted = report.bootSeconds.values.reduce(0, +)
        #expect(accounted > 0 && accounted <= report.allBootedSeconds + 1e-9, "\(report.bootSeconds)")
        #expect(report.bootSeconds["MNT"] != nil && report.bootSeconds["LOOKUP"] != nil, "\(report.bootSeconds)")
        for (index, server) in servers.enumerated() {
            #expect(
                server.log.withLock { $0.written["/var/log"] }
                    == BootReplay.payload(tag: "client-\(index)", offset: 0, count: 40))
        }
        // A client that cannot connect counts every call of its boot as an error.
        let failed = await BootStorm.run(
            script: try BootScript.parse(Self.script), clients: 1, export: { _ in "/" },
            connect: { _ in throw CancellationError() })
        #expect(failed.errors == 13 && failed.firstErrors.count == 1)
    }

    /// Each instant of a boot goes to the oldest call outstanding then, or to the client when none is.
    @Test func bootTimeGoesToTheOldestCallOutstanding() {
        let spans = [
            BootTimeline.Span(operation: "MNT", sent: 0.1, answered: 0.5),
            BootTimeline.Span(operation: "LOOKUP", sent: 0.5, answered: 0.7),
            BootTimeline.Span(operation: "WRITE", sent: 0.6, answered: 1.0),
            BootTimeline.Span(operation: "GETATTR", sent: 0.65, answered: 0.8),
            BootTimeline.Span(operation: "GETATTR", sent: 1.05, answered: 1.1),
        ]
        let shares = BootTimeline.attribute(spans.shuffled(), until: 1.2)
        let expected = ["(client)": 0.1 + 0.05 + 0.1, "MNT": 0.4, "LOOKUP": 0.2, "WRITE": 0.3, "GETATTR": 0.05]
        #expect(Set(shares.keys) == Set(expected.keys), "\(shares)")
        for (operation, seconds) in expected {
            #expect(abs((shares[operation] ?? -1) - seconds) < 1e-9, "\(operation): \(shares)")
        }
        #expect(BootTimeline.attribute([], until: 2) == ["(client)": 2])
    }

    @Test func percentileIsNearestRank() {
        #expect(BootStorm.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5) == 5)
        #expect(BootStorm.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.99) == 10)
        #expect(BootStorm.percentile([Int](), 0.5) == 0)
    }

    @Test func payloadIsPositionedByOffset() {
        let whole = BootReplay.payload(tag: "x", offset: 0, count: 100)
        let tail = BootReplay.payload(tag: "x", offset: 37, count: 63)
        #expect(Array(whole[37...]) == tail)
    }
}
