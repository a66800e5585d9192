/// A map that holds at most `capacity` entries, of at most `weightLimit` in weight together, and forgets the least
/// recently used first. An entry weighs 1 unless `set` says otherwise (a cached directory listing weighs its names).
///
/// Reading or writing an entry makes it the most recent; eviction costs O(1) amortized. Not
/// thread-safe: keep it behind the owner's lock.
///
/// `@inlinable` so that callers in other modules get it specialized for their key and value: unspecialized, every
/// call looked up the metadata of its entry tuple in the runtime's caches, which cost more than the hashing (the
/// node cache is asked on every call).
public struct LRUMap<Key: Hashable, Value> {
    public let capacity: Int
    public let weightLimit: Int
    @usableFromInline var entries: [Key: (value: Value, generation: UInt64, weight: Int)] = [:]
    /// The weight of the entries held (`weight`).
    @usableFromInline var heldWeight = 0
    /// Recency order, oldest first, from `head` on; an item is stale when its generation is no
    /// longer its entry's.
    @usableFromInline var order: [(key: Key, generation: UInt64)] = []
    @usableFromInline var head = 0
    @usableFromInline var nextGeneration: UInt64 = 0

    @inlinable
    public init(capacity: Int, weightLimit: Int = .max) {
        self.capacity = max(0, capacity)
        self.weightLimit = max(0, weightLimit)
    }

    @inlinable
    public var count: Int { self.entries.count }

    /// The weight of the entries held.
    @inlinable
    public var weight: Int { self.heldWeight }

    /// The value for `key`, now the most recently used; nil if absent.
    @inlinable
    public mutating func value(for key: Key) -> Value? {
        guard let index = self.entries.index(forKey: key) else { return nil }
        // One hash lookup: the entry's generation is updated in place.
        let generation = self.nextGeneration
        self.nextGeneration &+= 1
        self.entries.values[index].generation = generation
        self.order.append((key, generation))
        let value = self.entries.values[index].value
        self.compactIfStale()
        return value
    }

    /// Stores `value` for `key` as the most recently used, evicting the oldest entries beyond
    /// `capacity` or `weightLimit`. A value heavier than `weightLimit` by itself is kept, alone: a
    /// directory listing larger than the limit, not kept, would be read again for each of its pages.
    @inlinable
    public mutating func set(_ value: Value, for key: Key, weight: Int = 1) {
        let generation = self.nextGeneration
        self.nextGeneration &+= 1
        if let replaced = self.entries.updateValue((value, generation, weight), forKey: key) {
            self.heldWeight -= replaced.weight
        }
        self.heldWeight += weight
        self.order.append((key, generation))
        while self.head < self.order.count {
            let overCapacity = self.entries.count > self.capacity
            guard overCapacity || self.heldWeight > self.weightLimit else { break }
            // The item appended last is this entry: too heavy by itself, it stays.
            if !overCapacity && self.head == self.order.count - 1 { break }
            let oldest = self.order[self.head]
            self.head += 1
            if let entry = self.entries[oldest.key], entry.generation == oldest.generation {
                self.entries[oldest.key] = nil
                self.heldWeight -= entry.weight
            }
        }
        self.compactIfStale()
    }

    @inlinable
    public mutating func removeValue(for key: Key) {
        if let removed = self.entries.removeValue(forKey: key) { self.heldWeight -= removed.weight }
    }

    @inlinable
    public mutating func removeAll() {
        self.entries = [:]
        self.order = []
        self.head = 0
        self.heldWeight = 0
    }

    /// Stale order items pile up when entries are touched repeatedly: drop them.
    @inlinable
    mutating func compactIfStale() {
        guard self.order.count - self.head > 4 * self.capacity + 64 else { return }
        self.order = self.order[self.head...].filter { self.entries[$0.key]?.generation == $0.generation }
        self.head = 0
    }
}

extension LRUMap: Sendable where Key: Sendable, Value: Sendable {}
