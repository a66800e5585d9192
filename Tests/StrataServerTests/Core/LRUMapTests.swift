import Basics
import Testing

/// The bounded map under the node cache, the listing cache and the duplicate request cache.
@Suite struct LRUMapTests {
    @Test func theLeastRecentlyUsedGoesFirstAndIsReported() {
        var map = LRUMap<Int, String>(capacity: 2)
        #expect(map.set("one", for: 1).isEmpty)
        #expect(map.set("two", for: 2).isEmpty)
        #expect(map.value(for: 1) == "one", "reading 1 makes 2 the oldest")
        #expect(map.set("three", for: 3) == [2])
        #expect(map.value(for: 2) == nil)
        #expect(map.set("one again", for: 1).isEmpty, "replacing an entry evicts nothing")
        #expect(map.set("four", for: 4) == [3])
        #expect(map.count == 2)
        #expect(map.value(for: 1) == "one again")
    }

    @Test func aMapWithoutCapacityKeepsNothing() {
        var map = LRUMap<Int, Int>(capacity: 0)
        #expect(map.set(1, for: 1) == [1])
        #expect(map.value(for: 1) == nil)
        #expect(map.count == 0)
    }

    @Test func manyTouchesOfFewEntriesKeepTheOrder() {
        var map = LRUMap<Int, Int>(capacity: 3)
        for round in 0..<1000 {
            for key in 0..<3 { map.set(round, for: key) }
        }
        #expect(map.set(0, for: 9) == [0], "0 was written longest ago")
        #expect(map.count == 3)
    }
}
