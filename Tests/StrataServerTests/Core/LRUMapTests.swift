import Basics
import Testing

/// The bounded map under the node cache, the listing cache and the duplicate request cache.
@Suite struct LRUMapTests {
    @Test func theLeastRecentlyUsedGoesFirst() {
        var map = LRUMap<Int, String>(capacity: 2)
        map.set("one", for: 1)
        map.set("two", for: 2)
        #expect(map.value(for: 1) == "one", "reading 1 makes 2 the oldest")
        map.set("three", for: 3)
        #expect(map.value(for: 2) == nil)
        map.set("one again", for: 1)
        #expect(map.count == 2, "replacing an entry evicts nothing")
        map.set("four", for: 4)
        #expect(map.value(for: 3) == nil)
        #expect(map.value(for: 1) == "one again")
        #expect(map.count == 2)
    }

    @Test func aMapWithoutCapacityKeepsNothing() {
        var map = LRUMap<Int, Int>(capacity: 0)
        map.set(1, for: 1)
        #expect(map.value(for: 1) == nil)
        #expect(map.count == 0)
    }

    @Test func manyTouchesOfFewEntriesKeepTheOrder() {
        var map = LRUMap<Int, Int>(capacity: 3)
        for round in 0..<1000 {
            for key in 0..<3 { map.set(round, for: key) }
        }
        map.set(0, for: 9)
        #expect(map.value(for: 0) == nil, "0 was written longest ago")
        #expect(map.value(for: 1) == 999 && map.value(for: 2) == 999 && map.value(for: 9) == 0)
    }

    @Test func entriesWeighedTogetherStayUnderTheLimit() {
        var map = LRUMap<Int, String>(capacity: 100, weightLimit: 10)
        map.set("a", for: 1, weight: 4)
        map.set("b", for: 2, weight: 4)
        #expect(map.weight == 8)
        #expect(map.value(for: 1) == "a", "reading 1 makes 2 the oldest")
        map.set("c", for: 3, weight: 5)
        #expect(map.value(for: 2) == nil, "the oldest went to make room")
        #expect(map.value(for: 1) == "a" && map.value(for: 3) == "c")
        #expect(map.weight == 9)
        map.set("a, lighter", for: 1, weight: 1)
        #expect(map.weight == 6, "a replaced entry's weight is its new one")
        map.set("too heavy", for: 1, weight: 11)
        #expect(map.value(for: 1) == "too heavy", "heavier than the limit by itself: kept, alone")
        #expect(map.value(for: 3) == nil && map.weight == 11 && map.count == 1)
        map.set("c", for: 3, weight: 5)
        #expect(map.value(for: 1) == nil && map.weight == 5, "the next entry evicts it")
        map.removeValue(for: 3)
        #expect(map.weight == 0 && map.count == 0)
        map.set("d", for: 4, weight: 10)
        map.removeAll()
        #expect(map.weight == 0)
        map.set("e", for: 5)
        #expect(map.weight == 1, "an entry weighs 1 unless told")
    }
}
