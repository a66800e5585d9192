/// A map that holds at most `capacity` entries and forgets the least recently used first.
///
/// Reading or writing an entry makes it the most recent; eviction costs O(1) amortized. Not
/// thread-safe: keep it behind the owner's lock.
public struct LRUMap<Key: Hashable, Value> {
    public let capacity: Int
    private var entries: [Key: (value: Value, generation: UInt64)] = [:]
    /// Recency order, oldest first, from `head` on; an item is stale when its generation is no
    /// longer its entry's.
    private var order: [(key: Key, generation: UInt64)] = []
    private var head = 0
    private var nextGeneration: UInt64 = 0

    public init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    public var count: Int { self.entries.count }

    /// The value for `key`, now the most recently used; nil if absent.
    public mutating func value(for key: Key) -> Value? {
        guard let value = self.entries[key]?.value else { return nil }
        self.touch(key, value)
        self.compactIfStale()
        return value
    }

    /// Stores `value` for `key` as the most recently used, evicting the oldest entries beyond
    /// `capacity`.
    public mutating func set(_ value: Value, for key: Key) {
        self.touch(key, value)
        while self.entries.count > self.capacity, self.head < self.order.count {
            let oldest = self.order[self.head]
            self.head += 1
            if self.entries[oldest.key]?.generation == oldest.generation {
                self.entries[oldest.key] = nil
            }
        }
        self.compactIfStale()
    }

    public mutating func removeValue(for key: Key) {
        self.entries[key] = nil
    }

    public mutating func removeAll() {
        self.entries = [:]
        self.order = []
        self.head = 0
    }

    private mutating func touch(_ key: Key, _ value: Value) {
        let generation = self.nextGeneration
        self.nextGeneration &+= 1
        self.entries[key] = (value, generation)
        self.order.append((key, generation))
    }

    /// Stale order items pile up when entries are touched repeatedly: drop them.
    private mutating func compactIfStale() {
        guard self.order.count - self.head > 4 * self.capacity + 64 else { return }
        self.order = self.order[self.head...].filter { self.entries[$0.key]?.generation == $0.generation }
        self.head = 0
    }
}

extension LRUMap: Sendable where Key: Sendable, Value: Sendable {}
