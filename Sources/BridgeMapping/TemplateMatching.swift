public import BridgeConfig

// Matching a template against text, per message. The template language (parsing, rendering, and the general
// inverse search the loader validates with) is BridgeConfig's; these are the shortcuts the data path takes.

extension Template {
    /// The values that render to exactly `text`, or nil: ``Template/invert(_:fixed:)``, with shortcuts for the
    /// templates devices' topics and thing IDs use (this runs per device message and per downlink request).
    ///
    /// - parameter fixed: values some placeholders must have (compared after their transforms), e.g. the
    ///   configured namespace; they are included in the result.
    public func match(_ text: String, fixed: [String: String] = [:]) -> [String: String]? {
        var values = fixed
        if let bound = bindWhole(text[...], into: &values) { return bound ? values : nil }
        // Cheap rejections first: a literal start or end must be there.
        if case .literal(let first)? = parts.first, !text.hasPrefix(first) { return nil }
        if case .literal(let last)? = parts.last, !text.hasSuffix(last) { return nil }
        if isPlainSequence, Self.isPrintableASCII(text), let values = firstCandidate(text, fixed: fixed) { return values }
        return invert(text, fixed: fixed)
    }

    /// The common level `{deviceId}` (one placeholder, no transforms): the whole text is the value, bound in
    /// place with no search and no copy of `values`; this runs per device message. Nil for other templates.
    package func bindWhole(_ text: Substring, into values: inout [String: String]) -> Bool? {
        guard parts.count == 1, case .placeholder(let p) = parts[0], p.transforms.isEmpty else { return nil }
        guard !text.isEmpty else { return false }
        if let known = values[p.name] { return known == text }
        values[p.name] = String(text)
        return true
    }

    /// The search's first candidate for a plain sequence, on bytes: each placeholder up to the first occurrence of
    /// the next literal after at least one byte, the last one (or the one before a final literal) up to the end.
    /// In printable ASCII a byte is a character, so when this candidate binds, it is the one the search returns
    /// (it tries shorter values first, level by level); nil when it does not, and the search decides.
    package func firstCandidate(_ text: String, fixed: [String: String]) -> [String: String]? {
        var values = fixed
        values.reserveCapacity(fixed.count + parts.count + 3)
        let bytes = text.utf8
        var position = bytes.startIndex
        for (index, part) in parts.enumerated() {
            switch part {
            case .literal(let literal):
                guard bytes[position...].starts(with: literal.utf8) else { return nil }
                position = bytes.index(position, offsetBy: literal.utf8.count)
            case .placeholder(let p):
                guard position < bytes.endIndex else { return nil }
                let end: String.Index
                if index + 1 == parts.count {
                    end = bytes.endIndex
                } else if case .literal(let literal) = parts[index + 1] {
                    if index + 2 == parts.count {
                        // The final literal sits at the end (checked by `match`); the value is everything before it.
                        end = bytes.index(bytes.endIndex, offsetBy: -literal.utf8.count)
                        guard end > position else { return nil }
                    } else {
                        guard let found = Self.firstOccurrence(of: literal, in: text, after: position) else { return nil }
                        end = found
                    }
                } else {
                    return nil
                }
                let value = text[position..<end]
                if let known = values[p.name] {
                    guard known == value else { return nil }
                } else {
                    values[p.name] = String(value)
                }
                position = end
            }
        }
        return position == bytes.endIndex ? values : nil
    }

    /// Where `literal` first starts in `text` at least one byte after `position`.
    private static func firstOccurrence(of literal: String, in text: String, after position: String.Index) -> String.Index? {
        let bytes = text.utf8
        guard let first = literal.utf8.first, position < bytes.endIndex else { return nil }
        var candidate = bytes.index(after: position)
        while candidate < bytes.endIndex {
            guard let found = bytes[candidate...].firstIndex(of: first) else { return nil }
            if bytes[found...].starts(with: literal.utf8) { return found }
            candidate = bytes.index(after: found)
        }
        return nil
    }
}
