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
    /// lock, which every NFS call takes, by one writer at a time (`mountTableWriting`), under
    /// `persistLock`, which orders it with the other state files. The writer writes the table as
    /// it is when it starts, and again until the file holds every change made so far; a caller
    /// that finds a writer at work leaves its change to it and returns at once. When a room
    /// powers on, each MNT otherwise waited for the writes (a file flush and a directory flush
    /// each) queued before it: at 200 clients, a tenth of a second per MNT. A MNT's reply does
    /// not report the mount table (DUMP is answered from memory; the file is what a restarted
    /// server knows of its clients' mounts), so it need not wait for another's write of it.
    func changeMountTable(_ change: (inout [MountRecord]) -> Void) {
        self.state.withLock { state in
            change(&state.mounts)
            self.mountTableChanges.add(1, ordering: .sequentiallyConsistent)
        }
        // Each round: become the writer, or leave. A change made while the writer writes is seen by the writer's
        // next check, which follows its release of `mountTableWriting` (whose holding the caller saw).
        while self.mountTableWritten.load(ordering: .sequentiallyConsistent)
            < self.mountTableChanges.load(ordering: .sequentiallyConsistent)
        {
            guard
                self.mountTableWriting.compareExchange(
                    expected: false, desired: true, ordering: .sequentiallyConsistent
                ).exchanged
            else { return }
            let written = self.persistLock.withLock { _ -> Bool in
                let (mounts, stateDirectory, changes) = self.state.withLock {
                    (
                        $0.mounts, $0.configuration.server.stateDirectory,
                        self.mountTableChanges.load(ordering: .sequentiallyConsistent)
                    )
                }
                do {
                    try ExportRegistry.saveMountTable(mounts, stateDirectory: stateDirectory)
                    self.mountTableWritten.store(changes, ordering: .sequentiallyConsistent)
                    return true
                } catch {
                    self.logger.error(
                        "cannot write the mount table; showmount -a may be out of date until the next change",
                        metadata: ["error": "\(error)"])
                    return false
                }
            }
            self.mountTableWriting.store(false, ordering: .sequentiallyConsistent)
            if !written { return }
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
