import Glibc

/// Group commit: callers that need the same kind of durable write at the same time share one transaction (one
/// fsync). The first caller to find no commit running becomes the committer for everything queued so far; the
/// others wait for their results. `@unchecked Sendable`: `mutex`/`condition` protect every mutable field.
final class GroupCommit<Item: Sendable, Output: Sendable>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var pending: [(ticket: Int, item: Item)] = []
    private var done: [Int: Result<Output, UnionError>] = [:]
    private var isCommitting = false
    private var nextTicket = 0

    init() {
        self.mutex.initialize(to: pthread_mutex_t())
        self.condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(self.mutex, nil)
        pthread_cond_init(self.condition, nil)
    }

    deinit {
        pthread_cond_destroy(self.condition)
        pthread_mutex_destroy(self.mutex)
        self.condition.deallocate()
        self.mutex.deallocate()
    }

    /// Queues `items` and returns their outputs, in order. `commit` turns one batch into its outputs (same count,
    /// same order); it runs on whichever caller commits, without the group's lock held.
    func submit(_ items: [Item], commit: ([Item]) throws(UnionError) -> [Output]) throws(UnionError) -> [Output] {
        pthread_mutex_lock(self.mutex)
        var tickets: [Int] = []
        for item in items {
            self.nextTicket += 1
            tickets.append(self.nextTicket)
            self.pending.append((self.nextTicket, item))
        }
        while true {
            let results = tickets.compactMap { self.done[$0] }
            if results.count == tickets.count {
                for t in tickets { self.done[t] = nil }
                pthread_mutex_unlock(self.mutex)
                var out: [Output] = []
                out.reserveCapacity(results.count)
                for r in results {
                    switch r {
                    case .success(let o): out.append(o)
                    case .failure(let e): throw e
                    }
                }
                return out
            }
            if !self.isCommitting {
                self.isCommitting = true
                let batch = self.pending
                self.pending = []
                pthread_mutex_unlock(self.mutex)
                let outcome: Result<[Output], UnionError>
                do throws(UnionError) {
                    let outs = try commit(batch.map(\.item))
                    outcome = outs.count == batch.count ? .success(outs) : .failure(.sidecar("group commit: short batch"))
                } catch {
                    outcome = .failure(error)
                }
                pthread_mutex_lock(self.mutex)
                for (j, p) in batch.enumerated() {
                    switch outcome {
                    case .success(let outs): self.done[p.ticket] = .success(outs[j])
                    case .failure(let e): self.done[p.ticket] = .failure(e)
                    }
                }
                self.isCommitting = false
                pthread_cond_broadcast(self.condition)
                continue
            }
            pthread_cond_wait(self.condition, self.mutex)
        }
    }
}
