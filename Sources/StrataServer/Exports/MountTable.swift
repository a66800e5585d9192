import Foundation
import Logging
import Synchronization

/// The mount table (MOUNT DUMP, `showmount -a`) and the reset generations: small state files
/// in `state_dir`, written whole at each change.
extension ExportRegistry {
    /// UMNT: forgets the caller's mount of `path`.
    public func unmount(path: String, host: String) {
        self.changeMountTable { $0.removeAll { $0.host == host && $0.directory == path } }
    }

    /// UMNTALL: forgets every mount of the caller.
    public func unmountAll(host: String) {
        self.changeMountTable { $0.removeAll { $0.host == host } }
    }

    static func mountTablePath(_ stateDirectory: String) -> String { "\(stateDirectory)/rmtab" }

    /// Changes the mount table and writes it to disk. The file is written outside the state
    /// lock, which every NFS call takes, under a lock of its own that also orders the writes:
    /// each one writes the table as it is when it gets that lock, so the last write wins with
    /// the newest table. A change that a write made meanwhile already holds is not written
    /// again: when a room powers on, the MNTs that queued behind one write (a file flush and a
    /// directory flush) share the next, instead of each waiting for all the writes before it.
    func changeMountTable(_ change: (inout [MountRecord]) -> Void) {
        let mine = self.state.withLock { state in
            change(&state.mounts)
            return self.mountTableChanges.add(1, ordering: .relaxed).newValue
        }
        self.persistLock.withLock { _ in
            if self.mountTableWritten.load(ordering: .relaxed) >= mine { return }
            let (mounts, stateDirectory, changes) = self.state.withLock {
                ($0.mounts, $0.configuration.server.stateDirectory, self.mountTableChanges.load(ordering: .relaxed))
            }
            do {
                try ExportRegistry.saveMountTable(mounts, stateDirectory: stateDirectory)
                self.mountTableWritten.store(changes, ordering: .relaxed)
            } catch {
                self.logger.error(
                    "cannot write the mount table; showmount -a may be out of date until the next change",
                    metadata: ["error": "\(error)"])
            }
        }
    }

    static func loadMountTable(stateDirectory: String, logger: Logger? = nil) -> [MountRecord] {
        guard let text = StateFile.read(mountTablePath(stateDirectory), logger: logger) else { return [] }
        // One mount a line: host, client key, export path (the path may contain spaces: last).
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 2).map(String.init)
            guard fields.count == 3 else { return nil }
            return MountRecord(host: fields[0], directory: fields[2], clientKey: fields[1])
        }
    }

    static func saveMountTable(_ mounts: [MountRecord], stateDirectory: String) throws(StateFile.WriteError) {
        let text = mounts.map { "\($0.host) \($0.clientKey) \($0.directory)\n" }.joined()
        try StateFile.write(text, to: mountTablePath(stateDirectory))
    }

    static func generationsPath(_ stateDirectory: String) -> String { "\(stateDirectory)/client-generations" }

    static func loadGenerations(stateDirectory: String, logger: Logger? = nil) -> [String: UInt32] {
        guard let text = StateFile.read(generationsPath(stateDirectory), logger: logger) else { return [:] }
        var result: [String: UInt32] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = UInt32(parts[1]) { result[String(parts[0])] = value }
        }
        return result
    }

    static func saveGenerations(_ generations: [String: UInt32], stateDirectory: String) throws(StateFile.WriteError) {
        let text = generations.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined()
        try StateFile.write(text, to: generationsPath(stateDirectory))
    }
}
