import Glibc

/// Device topics as a ``KeptDecisions`` keeps them: their bytes in pages of one arena, a slot holding where
/// (no `String`, no heap object per topic), looked up by the bytes of the topic a message brings.
///
/// A topic that takes an evicted one's place is written over it where it fits, else after the others; once the
/// space so left behind outgrows the topics in use, the topics move to fresh pages (amortised O(1) per
/// eviction).
struct TopicArena: KeptKeys {
    typealias Key = UnsafeBufferPointer<UInt8>

    struct Stored {
        var page: UInt32
        var offset: UInt16
        var length: UInt16
    }

    /// An MQTT topic name is at most 65,535 bytes, so one always fits in a page.
    private static var pageSize: Int { 65_536 }
    private var pages: [[UInt8]] = []
    /// Bytes of topics no longer kept.
    private var unused = 0
    private var used = 0
    /// The pages being left during a compaction.
    private var leaving: [[UInt8]] = []

    func hash(_ key: Key) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(key))
        return hasher.finalize()
    }

    func hash(stored: Stored) -> Int {
        Self.bytes(stored, in: pages) { hash($0) }
    }

    func stored(_ stored: Stored, equals key: Key) -> Bool {
        guard Int(stored.length) == key.count else { return false }
        return Self.bytes(stored, in: pages) { bytes in
            guard let kept = bytes.baseAddress, let asked = key.baseAddress else { return key.isEmpty }
            return memcmp(kept, asked, key.count) == 0
        }
    }

    static func canHold(_ key: Key) -> Bool { key.count < pageSize }

    mutating func store(_ key: Key, replacing: Stored?) -> Stored {
        used += key.count
        if let replacing {
            used -= Int(replacing.length)
            if key.count <= Int(replacing.length) {
                unused += Int(replacing.length) - key.count
                write(key, at: Int(replacing.page), Int(replacing.offset))
                return Stored(page: replacing.page, offset: replacing.offset, length: UInt16(key.count))
            }
            unused += Int(replacing.length)
        }
        return append(key)
    }

    mutating func startCompaction() -> Bool {
        guard unused > Self.pageSize, unused > used else { return false }
        leaving = pages
        pages = []
        unused = 0
        return true
    }

    mutating func moved(_ stored: Stored) -> Stored {
        let old = leaving
        return Self.bytes(stored, in: old) { append($0) }
    }

    mutating func finishCompaction() {
        leaving = []
    }

    var storageBytes: Int {
        pages.reduce(pages.capacity * MemoryLayout<[UInt8]>.stride) { $0 + $1.capacity }
    }

    private static func bytes<Result>(_ stored: Stored, in pages: [[UInt8]], _ body: (Key) -> Result) -> Result {
        pages[Int(stored.page)].withUnsafeBufferPointer { page in
            body(UnsafeBufferPointer(rebasing: page[Int(stored.offset)..<Int(stored.offset) + Int(stored.length)]))
        }
    }

    private mutating func append(_ key: Key) -> Stored {
        if pages.isEmpty || pages[pages.count - 1].count + max(key.count, 1) > Self.pageSize {
            // The first page grows as a small table needs; later ones are made whole.
            var page: [UInt8] = []
            if !pages.isEmpty { page.reserveCapacity(Self.pageSize) }
            pages.append(page)
        }
        let page = pages.count - 1
        let offset = pages[page].count
        pages[page].append(contentsOf: key)
        return Stored(page: UInt32(page), offset: UInt16(offset), length: UInt16(key.count))
    }

    private mutating func write(_ key: Key, at page: Int, _ offset: Int) {
        pages[page].withUnsafeMutableBufferPointer { bytes in
            _ = UnsafeMutableBufferPointer(rebasing: bytes[offset..<offset + key.count]).update(fromContentsOf: key)
        }
    }
}

/// What each device topic decides, kept by its bytes.
typealias KeptTopics<Value> = KeptDecisions<TopicArena, Value>

extension KeptDecisions where Keys == TopicArena {
    /// The value kept for the device topic `topic`, marking it as in use; its bytes are hashed and compared in
    /// place.
    mutating func value(forTopic topic: String) -> Value? {
        var topic = topic
        return topic.withUTF8 { value(for: $0) }
    }

    @discardableResult
    mutating func keep(_ value: Value, forTopic topic: String) -> Bool {
        var topic = topic
        return topic.withUTF8 { keep(value, for: $0) }
    }
}
