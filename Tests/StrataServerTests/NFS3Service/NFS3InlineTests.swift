import Foundation
import Testing

@testable import StrataServer
@testable import Union

/// What the event loop may answer without blocking (`ExportRegistry.resolveWithoutBlocking`).
@Suite struct NFS3InlineResolutionTests {
    /// A handle whose namespace is closed is declined (opening it reads the disk); once the
    /// blocking resolution opened it, the same handle resolves to the same call; refusals are
    /// declined, never answered (the pool answers them, with their log line).
    @Test func resolvesOnlyWhatIsOpen() throws {
        let fixture = try RegistryFixture()
        let (registry, clock) = try fixture.clockedRegistry(.with(minimumIdle: 1, unmountedIdle: 5))
        defer { registry.closeAll() }
        let (mounted, root) = try registry.mountOK(from: "127.0.0.2")
        let fromClient = try call(from: "127.0.0.2")
        let (inline, object) = try #require(registry.resolveWithoutBlocking(fileHandle: root, for: fromClient))
        #expect(inline.namespace === mounted.namespace)
        #expect(object == (try ServerFileHandle(bytes: root).object))

        // Another client's handle, a malformed one: declined.
        #expect(registry.resolveWithoutBlocking(fileHandle: root, for: try call(from: "127.0.0.3")) == nil)
        #expect(registry.resolveWithoutBlocking(fileHandle: Array(root.dropLast()), for: fromClient) == nil)

        registry.unmount(path: "/diskless", host: "127.0.0.2")
        clock.advance(10)
        #expect(registry.closeIdleNamespaces() == 1)
        #expect(registry.resolveWithoutBlocking(fileHandle: root, for: fromClient) == nil)
        #expect(registry.openNamespaceCount == 0, "declining opened nothing")
        _ = try registry.resolve(fileHandle: root, for: fromClient).get()
        #expect(registry.resolveWithoutBlocking(fileHandle: root, for: fromClient) != nil)
    }
}
