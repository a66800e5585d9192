import Logging
import NFS3
import NIOCore
import SunRPC
import Testing
import Union

@testable import StrataServer

@Suite struct NFS3ProgramTests {
    @Test func nonIdempotentProceduresGoToTheDuplicateRequestCache() {
        struct NoResolver: NFS3HandleResolver {
            func resolve(
                fileHandle: [UInt8], for call: RPCCallContext
            ) -> Result<(ExportCall, ObjectHandle), CallRejection> { .failure(.badHandle) }
        }
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let program = NFS3Program(resolver: NoResolver(), writeVerifier: 1, logger: logger)
        #expect(program.program == 100_003)
        #expect(program.versions == 3...3)
        let expected: Set<UInt32> = [2, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        for procedure in UInt32(0)...25 {
            #expect(program.isNonIdempotent(version: 3, procedure: procedure) == expected.contains(procedure))
        }
    }
}
