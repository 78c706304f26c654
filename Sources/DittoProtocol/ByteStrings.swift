/// Code-unit-exact string operations. Swift's `String` compares and splits by grapheme clusters under
/// Unicode canonical equivalence; Ditto (Java) works on code units. For the protocol's string rules
/// (message path vs. subject, prefixes, separators) only byte-exact behaviour gives Ditto's answers.
extension StringProtocol {
    /// Whether the UTF-8 bytes start with `prefix`'s.
    func utf8HasPrefix(_ prefix: some StringProtocol) -> Bool {
        utf8.starts(with: prefix.utf8)
    }

    /// Whether the UTF-8 bytes end with `suffix`'s.
    func utf8HasSuffix(_ suffix: some StringProtocol) -> Bool {
        let count = utf8.count, suffixCount = suffix.utf8.count
        guard suffixCount <= count else { return false }
        return utf8.dropFirst(count - suffixCount).elementsEqual(suffix.utf8)
    }

    /// Whether the UTF-8 bytes are `head`'s followed by `tail`'s (without building `head + tail`).
    func utf8Equals(_ head: String, _ tail: String) -> Bool {
        utf8.count == head.utf8.count + tail.utf8.count && utf8HasPrefix(head) && utf8HasSuffix(tail)
    }

    /// Whether the UTF-8 bytes end with `head`'s followed by `tail`'s (without building `head + tail`).
    func utf8HasSuffix(_ head: String, _ tail: String) -> Bool {
        let count = utf8.count, headCount = head.utf8.count, tailCount = tail.utf8.count
        guard headCount + tailCount <= count, utf8HasSuffix(tail) else { return false }
        return utf8.dropFirst(count - tailCount - headCount).prefix(headCount).elementsEqual(head.utf8)
    }

    /// Splits at every `separator` byte (ASCII), keeping empty parts.
    func utf8Split(_ separator: UInt8) -> [String] {
        var parts: [String] = []
        var current: [UInt8] = []
        for byte in utf8 {
            if byte == separator {
                parts.append(String(decoding: current, as: UTF8.self))
                current.removeAll(keepingCapacity: true)
            } else {
                current.append(byte)
            }
        }
        parts.append(String(decoding: current, as: UTF8.self))
        return parts
    }

    /// The text before the first `separator` byte (ASCII), or all of it.
    func utf8Prefix(before separator: UInt8) -> String {
        String(decoding: utf8.prefix { $0 != separator }, as: UTF8.self)
    }

    /// Java's `String.trim()`: drops leading and trailing code units up to U+0020.
    func javaTrimmed() -> String {
        let bytes = Array(utf8)
        var start = 0
        var end = bytes.count
        while start < end && bytes[start] <= 0x20 { start += 1 }
        while end > start && bytes[end - 1] <= 0x20 { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}

/// Whether two buffers of the same length hold the same bytes, compared eight at a time (header names and
/// JSON keys are compared many times per message).
@inline(__always)
func sameBytes(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
    let count = a.count
    guard count > 0, let pa = a.baseAddress, let pb = b.baseAddress else { return true }
    let ra = UnsafeRawPointer(pa), rb = UnsafeRawPointer(pb)
    var i = 0
    while i + 8 <= count {
        if ra.loadUnaligned(fromByteOffset: i, as: UInt64.self) != rb.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
            return false
        }
        i += 8
    }
    while i < count {
        if pa[i] != pb[i] { return false }
        i += 1
    }
    return true
}
