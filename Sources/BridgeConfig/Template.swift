// Full Foundation: its string functions (trimming, replacing); Yams links it into the binary anyway.
import Foundation

/// Why a template could not be compiled, rendered or used where it was written.
public struct TemplateError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: Sendable, Hashable {
        /// A `{` without its `}`.
        case unclosedPlaceholder
        /// A `}` without its `{`.
        case unmatchedClosingBrace
        /// `{}` or `{|lower}`.
        case emptyPlaceholder
        /// A placeholder name with characters other than letters, digits, `_`, `-`, `.` (or a `header:` prefix).
        case invalidPlaceholderName(String)
        /// Ditto's own `{{ ... }}` syntax, which this file does not use.
        case dittoPlaceholderSyntax
        /// A transform this file does not know.
        case unknownTransform(String, suggestion: String?)
        /// A known transform with the wrong number or form of arguments.
        case invalidTransformArguments(String, expected: String)
        /// A `\` at the end of the text.
        case danglingEscape
        /// Rendering needed a value nobody provided.
        case missingValue(String)
        /// An MQTT topic or filter problem, with the explanation.
        case invalidTopic(String)
        /// A rendered topic level contained `+`, `#` or NUL, which cannot be published.
        case invalidTopicValue(placeholder: String, value: String)
    }

    /// What went wrong.
    public var kind: Kind
    /// Character offset in the template text where the problem starts, when it is in the text.
    public var offset: Int?

    /// Creates an error, optionally at a character offset.
    public init(_ kind: Kind, offset: Int? = nil) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String {
        switch kind {
        case .unclosedPlaceholder: "'{' without a matching '}'"
        case .unmatchedClosingBrace: "'}' without a matching '{' (write \\} for a literal brace)"
        case .emptyPlaceholder: "empty placeholder '{}'"
        case .invalidPlaceholderName(let name):
            "invalid placeholder name '\(name)' (letters, digits, '_', '-', '.'; starting with a letter)"
        case .dittoPlaceholderSyntax:
            "Ditto's '{{ ... }}' placeholder syntax is not used in this file; write {name}, e.g. {deviceId}"
        case .unknownTransform(let name, let suggestion):
            "unknown transform '\(name)'"
                + (suggestion.map { "; did you mean '\($0)'?" }
                    ?? "; known: lower, upper, prefix('x'), suffix('x'), replace('a','b'), default('x')")
        case .invalidTransformArguments(let name, let expected): "transform '\(name)' takes \(expected)"
        case .danglingEscape: "'\\' at the end of the text escapes nothing"
        case .missingValue(let name): "no value for placeholder {\(name)}"
        case .invalidTopic(let reason): reason
        case .invalidTopicValue(let name, let value):
            "{\(name)} = '\(value)' cannot be part of an MQTT topic (it contains '+', '#' or NUL)"
        }
    }
}

/// A text with `{placeholder|transform|...}` parts, e.g. `{namespace}:{deviceId|lower}`.
///
/// Syntax:
/// - `{name}` inserts a value; names start with a letter and contain letters, digits, `_`, `-`, `.`;
///   `{header:x-trace}` names a header (only where headers are available).
/// - Transforms apply left to right: `lower`, `upper`, `prefix('x')`, `suffix('x')`, `replace('a','b')`,
///   `default('x')` (used when the value is missing).
/// - `\{`, `\}` and `\\` are literal characters; inside `'...'` arguments `\'` is a quote.
///
/// ``invert(_:fixed:)`` inverts rendering (the mapping's `match` is the same with shortcuts): each placeholder
/// takes the shortest text (at least one character) that lets the rest match, the last one takes the rest;
/// transforms are undone where possible (`prefix`/`suffix` must be present and are stripped, `replace` is
/// reversed, `lower`/`upper` require the text to already be in that case).
public struct Template: Sendable, Hashable, CustomStringConvertible {
    /// One value transformation.
    public enum Transform: Sendable, Hashable, CustomStringConvertible {
        case lower
        case upper
        case prefix(String)
        case suffix(String)
        case replace(String, with: String)
        case `default`(String)

        public var description: String {
            switch self {
            case .lower: "lower"
            case .upper: "upper"
            case .prefix(let p): "prefix('\(p)')"
            case .suffix(let s): "suffix('\(s)')"
            case .replace(let a, let b): "replace('\(a)','\(b)')"
            case .default(let d): "default('\(d)')"
            }
        }

        static let names = ["lower", "upper", "prefix", "suffix", "replace", "default"]

        func apply(_ value: String?) -> String? {
            switch self {
            case .lower: value?.lowercased()
            case .upper: value?.uppercased()
            case .prefix(let p): value.map { p + $0 }
            case .suffix(let s): value.map { $0 + s }
            case .replace(let a, let b): value.map { a.isEmpty ? $0 : $0.replacingOccurrences(of: a, with: b) }
            case .default(let d): value ?? d
            }
        }

        /// Undoes `apply` where the rendered text allows it; nil when this text cannot have come from the transform.
        func invert(_ text: String) -> String? {
            switch self {
            case .lower: text == text.lowercased() ? text : nil
            case .upper: text == text.uppercased() ? text : nil
            case .prefix(let p): text.hasPrefix(p) && text.count > p.count ? String(text.dropFirst(p.count)) : nil
            case .suffix(let s): text.hasSuffix(s) && text.count > s.count ? String(text.dropLast(s.count)) : nil
            case .replace(let a, let b): b.isEmpty || a.isEmpty ? text : text.replacingOccurrences(of: b, with: a)
            case .default: text
            }
        }
    }

    /// One `{...}` part.
    public struct Placeholder: Sendable, Hashable, CustomStringConvertible {
        /// The value's name, e.g. `deviceId` or `header:x-trace`.
        public var name: String
        /// Applied left to right.
        public var transforms: [Transform]
        /// Character offset of the `{` in the template text.
        public var offset: Int

        public var description: String {
            "{" + ([name] + transforms.map(\.description)).joined(separator: "|") + "}"
        }

        /// True when rendering works without a value (a `default` comes before any other use).
        public var hasDefault: Bool {
            transforms.contains { if case .default = $0 { true } else { false } }
        }

        func render(_ value: String?) -> String? {
            transforms.reduce(value) { $1.apply($0) }
        }
    }

    /// Literal text or a placeholder.
    public enum Part: Sendable, Hashable {
        case literal(String)
        case placeholder(Placeholder)
    }

    /// The text as written in the config file.
    public let source: String
    /// The compiled parts, in order.
    public let parts: [Part]

    /// No placeholder name occurs twice, so the search may remember failed (part, position) pairs. Worked out
    /// once: the mapping matches thing IDs for every downlink request.
    private let namesAreDistinct: Bool

    /// No transforms, never two placeholders in a row, literals of printable ASCII (`{namespace}:{deviceId}`):
    /// the mapping's `match` can then try its first candidate on bytes before searching by characters.
    package let isPlainSequence: Bool

    /// Compiles `source`; throws on syntax errors with the character offset.
    public init(_ source: String) throws(TemplateError) {
        self.source = source
        self.parts = try TemplateParser.parse(source)
        var seen = Set<String>()
        var distinct = true
        for case .placeholder(let p) in parts where !seen.insert(p.name).inserted { distinct = false }
        self.namesAreDistinct = distinct
        var plain = true
        var previousIsPlaceholder = false
        for part in parts {
            switch part {
            case .placeholder(let p):
                if !p.transforms.isEmpty || previousIsPlaceholder { plain = false }
                previousIsPlaceholder = true
            case .literal(let text):
                if !Self.isPrintableASCII(text) { plain = false }
                previousIsPlaceholder = false
            }
        }
        self.isPlainSequence = plain
    }

    /// The placeholder names in order of first use.
    public var placeholders: [String] {
        var seen = Set<String>()
        var names: [String] = []
        for case .placeholder(let p) in parts where seen.insert(p.name).inserted { names.append(p.name) }
        return names
    }

    /// Every placeholder occurrence with its transforms and offset.
    public var placeholderParts: [Placeholder] {
        parts.compactMap { if case .placeholder(let p) = $0 { p } else { nil } }
    }

    /// True when the template has no placeholders.
    public var isConstant: Bool { placeholderParts.isEmpty }

    public var description: String { source }

    /// Inserts the values; a missing value without `default` throws ``TemplateError/Kind/missingValue(_:)``.
    public func render(_ values: [String: String]) throws(TemplateError) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .literal(let text): out += text
            case .placeholder(let p):
                guard let value = p.render(values[p.name]) else {
                    throw TemplateError(.missingValue(p.name), offset: p.offset)
                }
                out += value
            }
        }
        return out
    }

    /// The values that render to exactly `text`, or nil: the general search, by characters.
    ///
    /// The one definition of what a template matches. The loader asks it whether a topic level can come from a
    /// template; the mapping's `match` answers the same per message, trying its shortcuts first.
    /// - parameter fixed: values some placeholders must have (compared after their transforms), e.g. the
    ///   configured namespace; they are included in the result.
    package func invert(_ text: String, fixed: [String: String] = [:]) -> [String: String]? {
        var chars: [Character] = []
        var offsets: [String.Index] = []
        chars.reserveCapacity(text.utf8.count)
        offsets.reserveCapacity(text.utf8.count + 1)
        for index in text.indices {
            chars.append(text[index])
            offsets.append(index)
        }
        offsets.append(text.endIndex)
        var state = SearchState(text: text, chars: chars, offsets: offsets, values: fixed, memoize: namesAreDistinct)
        return invertParts(0, 0, &state) ? state.values : nil
    }

    package static func isPrintableASCII(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    private struct SearchState {
        let text: String
        /// The text's characters, and where each starts in `text` (plus its end): a candidate value is one slice.
        let chars: [Character]
        let offsets: [String.Index]
        var values: [String: String]
        /// (part, position) pairs known to fail. Exact when no name repeats: a placeholder's binding then depends
        /// only on its own text and the fixed values.
        var failed = Set<Int>()
        let memoize: Bool
        /// A backstop against pathological templates; real ones need a handful of steps.
        var budget = 5_000
    }

    private func invertParts(_ index: Int, _ position: Int, _ state: inout SearchState) -> Bool {
        let chars = state.chars
        if index == parts.count { return position == chars.count }
        let key = index * (chars.count + 1) + position
        if state.memoize, state.failed.contains(key) { return false }
        state.budget -= 1
        if state.budget < 0 { return false }
        let matched: Bool
        switch parts[index] {
        case .literal(let literal):
            matched = Self.hasLiteral(literal, in: chars, at: position) && invertParts(index + 1, position + literal.count, &state)
        case .placeholder(let p):
            matched = invertPlaceholder(p, index, position, &state)
        }
        if !matched, state.memoize { state.failed.insert(key) }
        return matched
    }

    private func invertPlaceholder(_ p: Placeholder, _ index: Int, _ position: Int, _ state: inout SearchState) -> Bool {
        let chars = state.chars
        guard position < chars.count else { return false }
        let isLast = index == parts.count - 1
        var nextLiteral: String?
        if index + 1 < parts.count, case .literal(let literal) = parts[index + 1] { nextLiteral = literal }
        for end in (isLast ? chars.count...chars.count : (position + 1)...chars.count) {
            // Only ends where the following literal starts can succeed.
            if let nextLiteral, !Self.hasLiteral(nextLiteral, in: chars, at: end) { continue }
            state.budget -= 1
            let raw = String(state.text[state.offsets[position]..<state.offsets[end]])
            // `bind` adds at most this placeholder's value, and a failed `matchParts` leaves `values` as it found
            // them (each level undoes its own binding), so undoing ours restores the state.
            let adds = state.values[p.name] == nil
            if bind(p, raw, &state.values), invertParts(index + 1, end, &state) { return true }
            if adds { state.values[p.name] = nil }
            if state.budget < 0 { return false }
        }
        return false
    }

    private static func hasLiteral(_ literal: String, in chars: [Character], at position: Int) -> Bool {
        var i = position
        for c in literal {
            guard i < chars.count, chars[i] == c else { return false }
            i += 1
        }
        return true
    }

    private func bind(_ p: Placeholder, _ raw: String, _ values: inout [String: String]) -> Bool {
        if let known = values[p.name] {
            return p.render(known) == raw
        }
        var value = raw
        for transform in p.transforms.reversed() {
            guard let inverted = transform.invert(value) else { return false }
            value = inverted
        }
        guard !value.isEmpty, p.render(value) == raw else { return false }
        values[p.name] = value
        return true
    }
}

enum TemplateParser {
    static func parse(_ source: String) throws(TemplateError) -> [Template.Part] {
        let chars = Array(source)
        var parts: [Template.Part] = []
        var literal = ""
        var i = 0
        func flush() {
            if !literal.isEmpty { parts.append(.literal(literal)) }
            literal = ""
        }
        while i < chars.count {
            let c = chars[i]
            switch c {
            case "\\":
                guard i + 1 < chars.count else { throw TemplateError(.danglingEscape, offset: i) }
                literal.append(chars[i + 1])
                i += 2
            case "}":
                throw TemplateError(.unmatchedClosingBrace, offset: i)
            case "{":
                if i + 1 < chars.count, chars[i + 1] == "{" { throw TemplateError(.dittoPlaceholderSyntax, offset: i) }
                flush()
                let (placeholder, next) = try parsePlaceholder(chars, start: i)
                parts.append(.placeholder(placeholder))
                i = next
            default:
                literal.append(c)
                i += 1
            }
        }
        flush()
        return parts
    }

    /// Parses `{name|t|t('a')}` starting at the `{`; returns the placeholder and the index after `}`.
    private static func parsePlaceholder(_ chars: [Character], start: Int) throws(TemplateError)
        -> (Template.Placeholder, Int)
    {
        // Split the inside at top-level `|`, respecting quoted arguments.
        var segments: [(text: String, offset: Int)] = []
        var current = ""
        var currentStart = start + 1
        var inQuote = false
        var i = start + 1
        var closed = false
        while i < chars.count {
            let c = chars[i]
            if inQuote {
                if c == "\\", i + 1 < chars.count {
                    current.append(c)
                    current.append(chars[i + 1])
                    i += 2
                    continue
                }
                if c == "'" { inQuote = false }
                current.append(c)
                i += 1
                continue
            }
            if c == "'" {
                inQuote = true
                current.append(c)
            } else if c == "|" {
                segments.append((current, currentStart))
                current = ""
                currentStart = i + 1
            } else if c == "}" {
                segments.append((current, currentStart))
                closed = true
                i += 1
                break
            } else if c == "{" {
                throw TemplateError(.unclosedPlaceholder, offset: start)
            } else {
                current.append(c)
            }
            i += 1
        }
        guard closed else { throw TemplateError(.unclosedPlaceholder, offset: start) }
        let name = segments[0].text.trimmingCharacters(in: .whitespaces)
        if name.isEmpty { throw TemplateError(.emptyPlaceholder, offset: start) }
        guard isValidName(name) else { throw TemplateError(.invalidPlaceholderName(name), offset: start + 1) }
        var transforms: [Template.Transform] = []
        for segment in segments.dropFirst() {
            transforms.append(try parseTransform(segment.text, offset: segment.offset))
        }
        return (Template.Placeholder(name: name, transforms: transforms, offset: start), i)
    }

    static func isValidName(_ name: String) -> Bool {
        var body = Substring(name)
        if name.hasPrefix("header:") {
            body = name.dropFirst("header:".count)
            // Header names are HTTP-ish tokens.
            return !body.isEmpty
                && body.unicodeScalars.allSatisfy {
                    $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0))
                }
        }
        guard let first = body.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic else { return false }
        return body.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0))
        }
    }

    private static func parseTransform(_ raw: String, offset: Int) throws(TemplateError) -> Template.Transform {
        let text = raw.trimmingCharacters(in: .whitespaces)
        let name: String
        var arguments: [String] = []
        if let open = text.firstIndex(of: "(") {
            name = String(text[..<open]).trimmingCharacters(in: .whitespaces)
            guard text.hasSuffix(")") else {
                throw TemplateError(.invalidTransformArguments(name, expected: expectedArguments(name)), offset: offset)
            }
            let inner = text[text.index(after: open)..<text.index(before: text.endIndex)]
            guard let parsed = parseArguments(inner) else {
                throw TemplateError(.invalidTransformArguments(name, expected: expectedArguments(name)), offset: offset)
            }
            arguments = parsed
        } else {
            name = text
        }
        func require(_ count: Int) throws(TemplateError) {
            guard arguments.count == count, count == 0 || text.contains("(") else {
                throw TemplateError(.invalidTransformArguments(name, expected: expectedArguments(name)), offset: offset)
            }
        }
        switch name {
        case "lower":
            guard !text.contains("(") else {
                throw TemplateError(.invalidTransformArguments(name, expected: "no arguments"), offset: offset)
            }
            return .lower
        case "upper":
            guard !text.contains("(") else {
                throw TemplateError(.invalidTransformArguments(name, expected: "no arguments"), offset: offset)
            }
            return .upper
        case "prefix":
            try require(1)
            return .prefix(arguments[0])
        case "suffix":
            try require(1)
            return .suffix(arguments[0])
        case "replace":
            try require(2)
            guard !arguments[0].isEmpty else {
                throw TemplateError(
                    .invalidTransformArguments(name, expected: "a non-empty text to replace"), offset: offset)
            }
            return .replace(arguments[0], with: arguments[1])
        case "default":
            try require(1)
            return .default(arguments[0])
        default:
            throw TemplateError(
                .unknownTransform(name, suggestion: Suggestions.closest(to: name, in: Template.Transform.names)),
                offset: offset)
        }
    }

    private static func expectedArguments(_ name: String) -> String {
        switch name {
        case "prefix", "suffix", "default": "one quoted argument, e.g. \(name)('x')"
        case "replace": "two quoted arguments, e.g. replace('a','b')"
        default: "no arguments"
        }
    }

    /// `'a', 'b'` -> ["a", "b"]; nil when not a list of single-quoted strings.
    private static func parseArguments(_ text: Substring) -> [String]? {
        var result: [String] = []
        var chars = Array(text)[...]
        func skipSpaces() { while let c = chars.first, c == " " { chars = chars.dropFirst() } }
        skipSpaces()
        if chars.isEmpty { return [] }
        while true {
            skipSpaces()
            guard chars.first == "'" else { return nil }
            chars = chars.dropFirst()
            var value = ""
            var closed = false
            while let c = chars.first {
                chars = chars.dropFirst()
                if c == "\\", let next = chars.first {
                    value.append(next)
                    chars = chars.dropFirst()
                } else if c == "'" {
                    closed = true
                    break
                } else {
                    value.append(c)
                }
            }
            guard closed else { return nil }
            result.append(value)
            skipSpaces()
            if chars.isEmpty { return result }
            guard chars.first == "," else { return nil }
            chars = chars.dropFirst()
        }
    }
}
