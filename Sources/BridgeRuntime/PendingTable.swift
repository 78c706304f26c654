import HeapModule
import Mosquitto

/// A bounded table of requests waiting for an answer, each with a deadline.
///
/// Pure bookkeeping: the caller supplies the time, so tests drive expiry without sleeping. Both directions
/// use it (Ditto waiting for a device, a device waiting for Ditto). A full table refuses new entries rather
/// than growing: the caller answers those requests with an error at once.
struct PendingTable<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    struct Entry: Sendable {
        var key: Key
        var value: Value
        var deadline: ContinuousClock.Instant
    }

    enum InsertOutcome: Sendable, Equatable {
        case inserted
        /// An entry with this key is still pending (a redelivered request): not inserted.
        case duplicate
        /// The table holds `capacity` entries: not inserted.
        case full
    }

    /// A deadline in the heap; stale when its entry was removed or replaced (`generation` differs).
    struct Deadline: Comparable, Sendable {
        var deadline: ContinuousClock.Instant
        var generation: UInt64
        var key: Key

        static func < (lhs: Deadline, rhs: Deadline) -> Bool {
            lhs.deadline == rhs.deadline ? lhs.generation < rhs.generation : lhs.deadline < rhs.deadline
        }

        static func == (lhs: Deadline, rhs: Deadline) -> Bool {
            lhs.deadline == rhs.deadline && lhs.generation == rhs.generation
        }
    }

    let capacity: Int
    var entries: [Key: (entry: Entry, generation: UInt64)] = [:]
    /// Expiry without scanning every entry: removed entries leave stale heap items, skipped when they surface
    /// and compacted when they outnumber the live ones.
    var deadlines = Heap<Deadline>()
    var generation: UInt64 = 0

    /// - Parameter capacity: at least 1 (smaller values are raised to 1 rather than trapping).
    init(capacity: Int) {
        self.capacity = max(capacity, 1)
    }

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    func contains(_ key: Key) -> Bool { entries[key] != nil }

    subscript(key: Key) -> Value? { entries[key]?.entry.value }

    mutating func insert(_ value: Value, for key: Key, deadline: ContinuousClock.Instant) -> InsertOutcome {
        if entries[key] != nil { return .duplicate }
        if entries.count >= capacity { return .full }
        generation += 1
        entries[key] = (Entry(key: key, value: value, deadline: deadline), generation)
        deadlines.insert(Deadline(deadline: deadline, generation: generation, key: key))
        if deadlines.count > 64, deadlines.count > 2 * entries.count { compact() }
        return .inserted
    }

    @discardableResult
    mutating func remove(_ key: Key) -> Value? {
        entries.removeValue(forKey: key)?.entry.value
    }

    /// Removes and returns every entry whose deadline is at or before `now`, earliest first.
    mutating func expire(now: ContinuousClock.Instant) -> [Entry] {
        var due: [Entry] = []
        while let first = deadlines.min, first.deadline <= now {
            deadlines.removeMin()
            if let live = entries[first.key], live.generation == first.generation {
                entries[first.key] = nil
                due.append(live.entry)
            }
        }
        return due
    }

    /// The earliest deadline, for scheduling the next expiry sweep.
    var nextDeadline: ContinuousClock.Instant? {
        mutating get {
            while let first = deadlines.min, entries[first.key]?.generation != first.generation { deadlines.removeMin() }
            return deadlines.min?.deadline
        }
    }

    /// Removes and returns everything (shutdown).
    mutating func removeAll() -> [Entry] {
        defer {
            entries.removeAll()
            deadlines = Heap()
        }
        return entries.values.map(\.entry)
    }

    mutating func compact() {
        deadlines = Heap(entries.values.map { Deadline(deadline: $0.entry.deadline, generation: $0.generation, key: $0.entry.key) })
    }
}

/// The one timer for the earliest deadline of a pending table: moved only for an earlier deadline.
struct ExpiryTimer {
    private var armed: (id: MQTTEventLoop.TimerID, deadline: ContinuousClock.Instant)?

    /// Arms the timer for `deadline` unless it fires at or before it already; `fire` runs on the loop's thread
    /// and calls ``fired()`` first.
    mutating func arm(_ deadline: ContinuousClock.Instant, on loop: MQTTEventLoop, _ fire: @escaping () -> Void) {
        if let armed, armed.deadline <= deadline { return }
        if let armed { loop.cancel(armed.id) }
        armed = (loop.schedule(at: deadline, fire), deadline)
    }

    mutating func fired() {
        armed = nil
    }
}
