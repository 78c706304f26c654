@testable import BridgeRuntime
import Testing

@Suite struct PendingTableTests {
    let start = ContinuousClock.now

    @Test func neverGrowsPastItsBound() {
        var table = PendingTable<String, Int>(capacity: 3)
        for i in 0..<3 {
            #expect(table.insert(i, for: "r\(i)", deadline: start + .seconds(i + 1)) == .inserted)
        }
        for i in 3..<100 {
            #expect(table.insert(i, for: "r\(i)", deadline: start + .seconds(1)) == .full)
            #expect(table.count == 3)
        }
        #expect(table["r0"] == 0)
        #expect(table["r3"] == nil)
        // Room again once one is answered.
        #expect(table.remove("r1") == 1)
        #expect(table.insert(9, for: "r9", deadline: start + .seconds(9)) == .inserted)
        #expect(table.count == 3)
    }

    @Test func duplicateKeysAreRefusedAndKeepTheFirst() {
        var table = PendingTable<String, String>(capacity: 2)
        #expect(table.insert("first", for: "c-1", deadline: start + .seconds(5)) == .inserted)
        #expect(table.insert("again", for: "c-1", deadline: start + .seconds(50)) == .duplicate)
        #expect(table["c-1"] == "first")
        #expect(table.count == 1)
        // A full table still reports a duplicate as a duplicate.
        #expect(table.insert("other", for: "c-2", deadline: start + .seconds(5)) == .inserted)
        #expect(table.insert("again", for: "c-1", deadline: start + .seconds(5)) == .duplicate)
    }

    @Test func expiresEarliestFirstAndOnlyWhatIsDue() {
        var table = PendingTable<String, Int>(capacity: 10)
        _ = table.insert(3, for: "c", deadline: start + .seconds(3))
        _ = table.insert(1, for: "a", deadline: start + .seconds(1))
        _ = table.insert(5, for: "e", deadline: start + .seconds(5))
        _ = table.insert(2, for: "b", deadline: start + .seconds(2))
        #expect(table.nextDeadline == start + .seconds(1))
        #expect(table.expire(now: start).isEmpty)
        let due = table.expire(now: start + .seconds(3))
        #expect(due.map(\.key) == ["a", "b", "c"])
        #expect(due.map(\.value) == [1, 2, 3])
        #expect(table.count == 1)
        #expect(!table.contains("a"))
        #expect(table.contains("e"))
        #expect(table.nextDeadline == start + .seconds(5))
        #expect(table.expire(now: start + .seconds(60)).map(\.key) == ["e"])
        #expect(table.isEmpty)
        #expect(table.nextDeadline == nil)
        // An expired key can be used again.
        #expect(table.insert(1, for: "a", deadline: start + .seconds(70)) == .inserted)
    }

    @Test func aCapacityBelowOneHoldsOneEntry() {
        var table = PendingTable<Int, Int>(capacity: 0)
        #expect(table.capacity == 1)
        #expect(table.insert(1, for: 1, deadline: start) == .inserted)
        #expect(table.insert(2, for: 2, deadline: start) == .full)
    }

    @Test func removeAllEmptiesTheTable() {
        var table = PendingTable<Int, Int>(capacity: 4)
        for i in 0..<4 { _ = table.insert(i, for: i, deadline: start + .seconds(i)) }
        #expect(Set(table.removeAll().map(\.key)) == [0, 1, 2, 3])
        #expect(table.isEmpty)
        #expect(table.remove(1) == nil)
    }
}
