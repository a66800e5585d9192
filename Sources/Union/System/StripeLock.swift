import Basics

/// One stripe of a striped lock set.
final class StripeLock: Sendable {
    let lock = Locked(())
}
