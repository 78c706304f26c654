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
/// Entries sit in pages of slots (``PagedArray``), found through an open-addressing ``SlotIndex``; how a key is
/// stored is up to `Keys`: as itself (``HashedKeys``) or, for device topics, as bytes in one arena
/// (``TopicArena``). No node or heap object per entry, and a table that grows to hundreds of thousands of keys
/// never copies its slots into a larger array.
struct KeptDecisions<Keys: KeptKeys, Value> {
    private struct Slot {
        var key: Keys.Stored
        var value: Value
        /// Looked up since the hand last passed.
        var referenced: Bool
    }

    private var keys = Keys()
    private var index = SlotIndex()
    private var slots = PagedArray<Slot>()
    var count: Int { slots.count }
    /// The next slot the eviction looks at.
    private var hand = 0
    let limit: Int

    init(limit: Int) {
        self.limit = min(max(1, limit), SlotIndex.maximumPositions)
    }

    /// The value kept for `key`, marking it as in use.
    mutating func value(for key: Keys.Key) -> Value? {
        guard let position = position(of: key, hash: keys.hash(key)) else { return nil }
        slots[position].referenced = true
        return slots[position].value
    }

    /// Keeps `value` for `key`; past the limit it replaces the first key the hand finds unused. Returns whether
    /// a key was evicted for it. A key `Keys` cannot hold is not kept (its messages are mapped each time).
    @discardableResult
    mutating func keep(_ value: Value, for key: Keys.Key) -> Bool {
        let hash = keys.hash(key)
        if let position = position(of: key, hash: hash) {
            slots[position].value = value
            return false
        }
        guard Keys.canHold(key) else { return false }
        guard count >= limit else {
            index.insert(hash: hash, position: count, limit: limit)
            slots.append(Slot(key: keys.store(key, replacing: nil), value: value, referenced: false))
            return false
        }
        while slots[hand].referenced {
            slots[hand].referenced = false
            hand = (hand + 1) % count
        }
        let evicted = slots[hand].key
        index.remove(hash: keys.hash(stored: evicted), position: hand)
        index.insert(hash: hash, position: hand, limit: limit)
        slots[hand] = Slot(key: keys.store(key, replacing: evicted), value: value, referenced: false)
        hand = (hand + 1) % count
        if keys.startCompaction() {
            for position in 0..<count { slots[position].key = keys.moved(slots[position].key) }
            keys.finishCompaction()
        }
        return true
    }

    mutating func removeAll() {
        keys = Keys()
        index = SlotIndex()
        slots = PagedArray()
        hand = 0
    }

    /// What the table holds in memory: keys, index and slots (the values' own heap objects not counted).
    var storageBytes: Int { keys.storageBytes + index.storageBytes + slots.storageBytes }

    private func position(of key: Keys.Key, hash: Int) -> Int? {
        index.first(hash: hash) { keys.stored(slots[$0].key, equals: key) }
    }
}

/// How a ``KeptDecisions`` holds its keys: looked up as `Key`, stored in a slot as `Stored`.
protocol KeptKeys {
    associatedtype Key
    associatedtype Stored
    init()
    /// Equal keys hash equally; seeded per process (`Hasher`), so a device cannot pick topics that collide.
    func hash(_ key: Key) -> Int
    func hash(stored: Stored) -> Int
    func stored(_ stored: Stored, equals key: Key) -> Bool
    static func canHold(_ key: Key) -> Bool
    /// Stores `key`, in the place of `replacing` (a key leaving the table) where it fits.
    mutating func store(_ key: Key, replacing: Stored?) -> Stored
    /// Whether the stored keys should move (``moved(_:)`` each of them, then ``finishCompaction()``).
    mutating func startCompaction() -> Bool
    mutating func moved(_ stored: Stored) -> Stored
    mutating func finishCompaction()
    var storageBytes: Int { get }
}

/// Keys stored as themselves.
struct HashedKeys<Key: Hashable>: KeptKeys {
    func hash(_ key: Key) -> Int { key.hashValue }
    func hash(stored: Key) -> Int { stored.hashValue }
    func stored(_ stored: Key, equals key: Key) -> Bool { stored == key }
    static func canHold(_ key: Key) -> Bool { true }
    func store(_ key: Key, replacing: Key?) -> Key { key }
    func startCompaction() -> Bool { false }
    func moved(_ stored: Key) -> Key { stored }
    func finishCompaction() {}
    var storageBytes: Int { 0 }
}

/// An open-addressing hash index from a key's hash to its position in a table (linear probing, backward-shift
/// deletion, no tombstones). Each slot is one word: 32 bits of the hash, so that most probes that do not match
/// are told apart without looking at the key, and the position.
struct SlotIndex {
    /// 0: empty; else the hash's low 32 bits above position + 1.
    private var slots: [UInt64] = []
    private var count = 0
    static var maximumPositions: Int { Int(UInt32.max) - 1 }

    /// The first position of `hash` that `matches`.
    func first(hash: Int, where matches: (Int) -> Bool) -> Int? {
        guard !slots.isEmpty else { return nil }
        let tag = UInt32(truncatingIfNeeded: hash)
        let mask = slots.count - 1
        var at = Int(tag) & mask
        while true {
            let slot = slots[at]
            if slot == 0 { return nil }
            if UInt32(truncatingIfNeeded: slot >> 32) == tag {
                let position = Int(UInt32(truncatingIfNeeded: slot)) - 1
                if matches(position) { return position }
            }
            at = (at + 1) & mask
        }
    }

    /// Adds `position` under `hash`; grows up to what `limit` positions need.
    mutating func insert(hash: Int, position: Int, limit: Int) {
        // At most four in five slots taken: a probe rarely leaves its cache line.
        if (count + 1) * 5 > slots.count * 4 { grow(limit: limit) }
        place((UInt64(UInt32(truncatingIfNeeded: hash)) << 32) | UInt64(position + 1))
        count += 1
    }

    /// Removes `position` (kept under `hash`), moving back the entries after it that may move.
    mutating func remove(hash: Int, position: Int) {
        let mask = slots.count - 1
        let entry = (UInt64(UInt32(truncatingIfNeeded: hash)) << 32) | UInt64(position + 1)
        var hole = Int(UInt32(truncatingIfNeeded: hash)) & mask
        while slots[hole] != entry { hole = (hole + 1) & mask }
        var next = (hole + 1) & mask
        while slots[next] != 0 {
            let home = Int(UInt32(truncatingIfNeeded: slots[next] >> 32)) & mask
            // The entry at `next` may fill the hole if its home is not between the hole and itself.
            if (next - home) & mask >= (next - hole) & mask {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = 0
        count -= 1
    }

    var storageBytes: Int { slots.capacity * MemoryLayout<UInt64>.stride }

    private mutating func place(_ entry: UInt64) {
        let mask = slots.count - 1
        var at = Int(UInt32(truncatingIfNeeded: entry >> 32)) & mask
        while slots[at] != 0 { at = (at + 1) & mask }
        slots[at] = entry
    }

    private mutating func grow(limit: Int) {
        var capacity = max(16, slots.count * 2)
        // Not past what `limit` positions need at the same load.
        while capacity / 2 * 4 >= limit * 5, capacity / 2 >= 16 { capacity /= 2 }
        guard capacity > slots.count else { return }
        let old = slots
        slots = Array(repeating: 0, count: capacity)
        for entry in old where entry != 0 { place(entry) }
    }
}

/// An array in pages of a fixed count: growing never copies the elements into a larger array, nor leaves the
/// smaller one behind as a hole in the heap.
struct PagedArray<Element> {
    /// Element `i` is `pages[i / pageSize][i % pageSize]`; every page but the last is full.
    private var pages: [[Element]] = []
    private(set) var count = 0
    private static var pageSize: Int { 1_024 }

    subscript(position: Int) -> Element {
        get { pages[position / Self.pageSize][position % Self.pageSize] }
        set { pages[position / Self.pageSize][position % Self.pageSize] = newValue }
        _modify { yield &pages[position / Self.pageSize][position % Self.pageSize] }
    }

    mutating func append(_ element: Element) {
        if count % Self.pageSize == 0 {
            // The first page grows as a small table needs; later ones are made whole.
            var page: [Element] = []
            if !pages.isEmpty { page.reserveCapacity(Self.pageSize) }
            pages.append(page)
        }
        pages[pages.count - 1].append(element)
        count += 1
    }

    var storageBytes: Int {
        pages.reduce(pages.capacity * MemoryLayout<[Element]>.stride) {
            $0 + $1.capacity * MemoryLayout<Element>.stride
        }
    }
}
