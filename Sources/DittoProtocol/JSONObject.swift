/// A JSON object that keeps its members in insertion order.
///
/// Setting an existing key keeps its position; a new key is appended. Equality ignores order (JSON
/// semantics). Small objects (the usual headers and payloads) are searched linearly; larger ones keep a
/// hash index so lookups and duplicate-key handling stay O(1).
public struct JSONObject: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// One member of the object.
    public typealias Element = (key: String, value: JSONValue)

    private var entries: [Element]
    private var index: [ByteKey: Int]?

    /// Up to this many members a key is found by comparing it with each one (headers and payloads are small, and a
    /// short scan costs less than hashing); larger objects keep the hash index. The parser's duplicate-key and
    /// compact-text checks compare keys the same way up to the same size, and leave larger objects to the index.
    static let linearMemberLimit = 16

    /// An empty object.
    public init() {
        entries = []
        index = nil
    }

    /// An object with the given members; a repeated key keeps its first position and its last value.
    public init(_ members: some Sequence<(String, JSONValue)>) {
        self.init()
        for (key, value) in members { self[key] = value }
    }

    /// Members known to have distinct keys (the parser checked).
    init(uniqueMembers: [Element]) {
        entries = uniqueMembers
        index = nil
        if entries.count > Self.linearMemberLimit { rebuildIndex() }
    }

    private mutating func rebuildIndex() {
        var built: [ByteKey: Int] = [:]
        built.reserveCapacity(entries.count)
        for (i, entry) in entries.enumerated() { built[ByteKey(entry.key)] = i }
        index = built
    }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements)
    }

    /// The number of members.
    public var count: Int { entries.count }

    /// Whether the object has no members.
    public var isEmpty: Bool { entries.isEmpty }

    /// The keys in order.
    public var keys: [String] { entries.map(\.key) }

    /// The values in order.
    public var values: [JSONValue] { entries.map(\.value) }

    private func position(of key: String) -> Int? {
        if let index { return index[ByteKey(key)] }
        for i in entries.indices where entries[i].key.utf8Equals(key) { return i }
        return nil
    }

    /// Whether `key` is a member.
    public func contains(_ key: String) -> Bool { position(of: key) != nil }

    /// The value for `key`; setting `nil` removes the member.
    public subscript(key: String) -> JSONValue? {
        get {
            guard let i = position(of: key) else { return nil }
            return entries[i].value
        }
        set {
            if let newValue {
                if let i = position(of: key) {
                    entries[i].value = newValue
                } else {
                    append(key: key, value: newValue)
                }
            } else {
                removeValue(forKey: key)
            }
        }
    }

    private mutating func append(key: String, value: JSONValue) {
        entries.append((key, value))
        if index != nil {
            index?[ByteKey(key)] = entries.count - 1
        } else if entries.count > Self.linearMemberLimit {
            rebuildIndex()
        }
    }

    /// Appends a member known not to be present yet (decoder fast path after its own duplicate check).
    mutating func appendNew(key: String, value: JSONValue) {
        append(key: key, value: value)
    }

    /// Removes `key` and returns its value, keeping the order of the others.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSONValue? {
        guard let i = position(of: key) else { return nil }
        let removed = entries.remove(at: i).value
        if index != nil {
            if entries.count > Self.linearMemberLimit { rebuildIndex() } else { index = nil }
        }
        return removed
    }

    /// Reserves room for `capacity` members.
    public mutating func reserveCapacity(_ capacity: Int) { entries.reserveCapacity(capacity) }

    public func makeIterator() -> IndexingIterator<[Element]> { entries.makeIterator() }

    public var underestimatedCount: Int { entries.count }

    /// Equal when both have the same keys with equal values, in any order.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (key, value) in lhs.entries {
            guard let other = rhs[key], other == value else { return false }
        }
        return true
    }

    /// Order-independent hash, consistent with `==`.
    public func hash(into hasher: inout Hasher) {
        var combined = 0
        for (key, value) in entries {
            var member = Hasher()
            key.hashUTF8(into: &member)
            member.combine(value)
            combined &+= member.finalize()
        }
        hasher.combine(entries.count)
        hasher.combine(combined)
    }
}

/// A dictionary key that compares strings by bytes, like `JSONObject` does.
struct ByteKey: Hashable {
    let string: String
    init(_ string: String) { self.string = string }
    static func == (lhs: ByteKey, rhs: ByteKey) -> Bool { lhs.string.utf8Equals(rhs.string) }
    func hash(into hasher: inout Hasher) { string.hashUTF8(into: &hasher) }
}
