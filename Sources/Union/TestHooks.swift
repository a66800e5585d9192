import Basics
import Synchronization

/// What a test attaches to a namespace when it opens it (`UnionNamespace.init(…, hooks:)`): a named crash point, a
/// callback while a copy for WRITE runs, a copy-up counter. A namespace opened without hooks (the server's) runs
/// none of this, and a real error can never be taken for a simulated crash: that is `UnionError.simulatedCrash`.
public final class UnionHooks: Sendable {
    /// The named crash point (see `UnionNamespace.crashPoint`) at which the running change stops as if the process
    /// died there.
    let crashAt = Locked<String?>(nil)
    /// Called while a copy for WRITE is being made (under the read lock only).
    let whileCopying = Locked<(@Sendable () -> Void)?>(nil)
    /// Copy-ups done since open ("exactly one copy-up").
    let copyUpCount = Atomic<Int>(0)
    /// Spare inodes kept (1) or not (0) whatever the upper's file system; -1: as it decides (`keepsSpareInodes`).
    let spareInodes = Atomic<Int8>(-1)

    public init() {}
}
