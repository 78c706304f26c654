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
/// the value once, in one array: no node per entry.
struct KeptDecisions<Key: Hashable, Value> {
    private struct Slot {
        var key: Key
        var value: Value
        /// Looked up since the hand last passed.
        var referenced: Bool
    }

    private var index: [Key: Int] = [:]
    private var slots: [Slot] = []
    /// The next slot the eviction looks at.
    private var hand = 0
    let limit: Int

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    var count: Int { slots.count }

    /// The value kept for `key`, marking it as in use.
    mutating func value(for key: Key) -> Value? {
        guard let slot = index[key] else { return nil }
        slots[slot].referenced = true
        return slots[slot].value
    }

    /// Keeps `value` for `key`; past the limit it replaces the first key the hand finds unused. Returns whether
    /// a key was evicted for it.
    @discardableResult
    mutating func keep(_ value: Value, for key: Key) -> Bool {
        if let slot = index[key] {
            slots[slot].value = value
            return false
        }
        guard slots.count >= limit else {
            index[key] = slots.count
            slots.append(Slot(key: key, value: value, referenced: false))
            return false
        }
        while slots[hand].referenced {
            slots[hand].referenced = false
            hand = (hand + 1) % slots.count
        }
        index[slots[hand].key] = nil
        index[key] = hand
        slots[hand] = Slot(key: key, value: value, referenced: false)
        hand = (hand + 1) % slots.count
        return true
    }

    mutating func removeAll() {
        index.removeAll()
        slots.removeAll()
        hand = 0
    }
}
