/// What the data plane keeps per key so that a message costs a lookup instead of rule matches and template
/// renders: per device topic what the topic decides, per Ditto signal the downlink rule it goes to.
///
/// Bounded: at most `limit` keys, never a refusal. A new key past the limit takes the place of one not looked up
/// since the eviction hand last passed it (second-chance, or CLOCK, eviction): keys in use stay, a key seen once
/// goes first, so a burst of new topics cannot push the busy ones out. Traffic that cycles evenly over more keys
/// than the limit (every point of a large gateway in turn) finds none of them kept, as with any eviction order:
/// only a limit above the number of keys avoids that, which is what small entries are for. A lookup sets a
/// flag; an insertion is O(1) amortised (the hand clears each flag at most once per turn). Emptied when the
/// mapping is reloaded.
///
/// Each key is stored twice (the index and its slot; a `String` key shares its storage, so only a retain),
/// the value once, in pages of slots: no node per entry, and a table that grows to hundreds of thousands of
/// keys never copies its slots into a larger array, nor leaves the smaller one behind as a hole in the heap.
struct KeptDecisions<Key: Hashable, Value> {
    private struct Slot {
        var key: Key
        var value: Value
        /// Looked up since the hand last passed.
        var referenced: Bool
    }

    private var index: [Key: Int] = [:]
    /// Slot `i` is `pages[i / pageSize][i % pageSize]`; every page but the last is full.
    private var pages: [[Slot]] = []
    private(set) var count = 0
    /// The next slot the eviction looks at.
    private var hand = 0
    let limit: Int
    private static var pageSize: Int { 1_024 }

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// The value kept for `key`, marking it as in use.
    mutating func value(for key: Key) -> Value? {
        guard let slot = index[key] else { return nil }
        let (page, offset) = slot.quotientAndRemainder(dividingBy: Self.pageSize)
        pages[page][offset].referenced = true
        return pages[page][offset].value
    }

    /// Keeps `value` for `key`; past the limit it replaces the first key the hand finds unused. Returns whether
    /// a key was evicted for it.
    @discardableResult
    mutating func keep(_ value: Value, for key: Key) -> Bool {
        if let slot = index[key] {
            let (page, offset) = slot.quotientAndRemainder(dividingBy: Self.pageSize)
            pages[page][offset].value = value
            return false
        }
        guard count >= limit else {
            if pages.last.map({ $0.count == Self.pageSize }) ?? true {
                // The first page grows as a small table needs; later ones are made whole.
                var page: [Slot] = []
                if !pages.isEmpty { page.reserveCapacity(Self.pageSize) }
                pages.append(page)
            }
            pages[pages.count - 1].append(Slot(key: key, value: value, referenced: false))
            index[key] = count
            count += 1
            return false
        }
        while true {
            let (page, offset) = hand.quotientAndRemainder(dividingBy: Self.pageSize)
            guard pages[page][offset].referenced else { break }
            pages[page][offset].referenced = false
            hand = (hand + 1) % count
        }
        let (page, offset) = hand.quotientAndRemainder(dividingBy: Self.pageSize)
        index[pages[page][offset].key] = nil
        index[key] = hand
        pages[page][offset] = Slot(key: key, value: value, referenced: false)
        hand = (hand + 1) % count
        return true
    }

    mutating func removeAll() {
        index.removeAll()
        pages.removeAll()
        count = 0
        hand = 0
    }
}
