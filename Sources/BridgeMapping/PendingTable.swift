/// A bounded table of requests waiting for an answer, each with a deadline.
///
/// Pure bookkeeping: the caller supplies the time, so tests drive expiry without sleeping. Both directions
/// use it (Ditto waiting for a device, a device waiting for Ditto). A full table refuses new entries rather
/// than growing: the caller answers those requests with an error at once.
public struct PendingTable<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    public struct Entry: Sendable {
        public var key: Key
        public var value: Value
        public var deadline: ContinuousClock.Instant
    }

    public enum InsertOutcome: Sendable, Equatable {
        case inserted
        /// An entry with this key is still pending (a redelivered request): not inserted.
        case duplicate
        /// The table holds `capacity` entries: not inserted.
        case full
    }

    public let capacity: Int
    private var entries: [Key: Entry] = [:]

    /// - Parameter capacity: at least 1 (smaller values are raised to 1 rather than trapping).
    public init(capacity: Int) {
        self.capacity = max(capacity, 1)
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    public func contains(_ key: Key) -> Bool { entries[key] != nil }

    public subscript(key: Key) -> Value? { entries[key]?.value }

    public mutating func insert(_ value: Value, for key: Key, deadline: ContinuousClock.Instant) -> InsertOutcome {
        if entries[key] != nil { return .duplicate }
        if entries.count >= capacity { return .full }
        entries[key] = Entry(key: key, value: value, deadline: deadline)
        return .inserted
    }

    @discardableResult
    public mutating func remove(_ key: Key) -> Value? {
        entries.removeValue(forKey: key)?.value
    }

    /// Removes and returns every entry whose deadline is at or before `now`, earliest first.
    public mutating func expire(now: ContinuousClock.Instant) -> [Entry] {
        let due = entries.values.filter { $0.deadline <= now }.sorted { $0.deadline < $1.deadline }
        for entry in due { entries.removeValue(forKey: entry.key) }
        return due
    }

    /// The earliest deadline, for scheduling the next expiry sweep.
    public var nextDeadline: ContinuousClock.Instant? {
        entries.values.map(\.deadline).min()
    }

    /// Removes and returns everything (shutdown).
    public mutating func removeAll() -> [Entry] {
        defer { entries.removeAll() }
        return Array(entries.values)
    }
}
