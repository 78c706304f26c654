// Full Foundation: its string functions (trimming, replacing); Yams links it into the binary anyway.
import Foundation
import Yams

/// A YAML node with the key path that leads to it.
struct YAMLValue {
    let node: Node
    let path: String

    var location: SourceLocation {
        node.mark.map { SourceLocation(line: $0.line, column: $0.column) } ?? .unknown
    }

    /// The location of a character offset inside a single-line scalar (for template errors).
    func location(atOffset offset: Int?) -> SourceLocation {
        guard let offset, case .scalar(let scalar) = node, !scalar.string.contains("\n") else { return location }
        switch scalar.style {
        case .plain, .any: return SourceLocation(line: location.line, column: location.column + offset)
        case .singleQuoted where !scalar.string.contains("'"):
            return SourceLocation(line: location.line, column: location.column + 1 + offset)
        case .doubleQuoted where !scalar.string.contains("\\") && !scalar.string.contains("\""):
            return SourceLocation(line: location.line, column: location.column + 1 + offset)
        default: return location
        }
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    func element(_ index: Int) -> String { "\(path)[\(index)]" }

    var isNull: Bool {
        if case .scalar(let s) = node, s.style == .plain || s.style == .any, node.tagName == .null { return true }
        return false
    }

    /// "a mapping", "a list", "the string 'x'", "the number 5", "true", "null".
    var kindDescription: String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let s):
            if isNull { return "null" }
            let quoted = s.style == .singleQuoted || s.style == .doubleQuoted
            if !quoted {
                switch node.tagName {
                case .int, .float: return "the number \(s.string)"
                case .bool: return "the boolean \(s.string)"
                default: break
                }
            }
            return "the string '\(s.string)'"
        }
    }
}

/// The keys of one YAML mapping, after merging `<<` merge keys.
struct MappingView {
    let value: YAMLValue
    let entries: [(key: String, keyNode: Node, value: YAMLValue)]
    /// Known keys that an unknown key looked like a typo of (already reported with "did you mean").
    var suggestedKeys: Set<String> = []

    subscript(_ key: String) -> YAMLValue? {
        entries.first { $0.key == key }?.value
    }

    func has(_ key: String) -> Bool { self[key] != nil }

    /// The location of the key itself (for "these two keys conflict" messages).
    func keyLocation(_ key: String) -> SourceLocation {
        guard let entry = entries.first(where: { $0.key == key }), let mark = entry.keyNode.mark else {
            return value.location
        }
        return SourceLocation(line: mark.line, column: mark.column)
    }
}

/// Typed access to YAML nodes that reports every problem to a sink and returns nil for bad values.
struct Reader {
    let sink: DiagnosticSink

    func error(_ v: YAMLValue, _ message: String, hint: String? = nil) {
        sink.error(v.location, v.path, message, hint: hint)
    }

    func warning(_ v: YAMLValue, _ message: String, hint: String? = nil) {
        sink.warning(v.location, v.path, message, hint: hint)
    }

    func typeError(_ v: YAMLValue, expected: String, hint: String? = nil) {
        error(v, "expected \(expected), found \(v.kindDescription)", hint: hint)
    }

    /// A mapping whose keys must all be in `keys`; unknown keys are reported with a suggestion, or with what
    /// `misplaced` says about a key that belongs to another form of the block (an MQTT key under
    /// `transport: websocket`).
    func mapping(
        _ v: YAMLValue, keys: [String], what: String? = nil,
        misplaced: (String) -> (message: String, hint: String)? = { _ in nil }
    ) -> MappingView? {
        guard case .mapping(let mapping) = v.node else {
            typeError(v, expected: "a mapping" + (what.map { " (\($0))" } ?? ""))
            return nil
        }
        var entries: [(key: String, keyNode: Node, value: YAMLValue)] = []
        var merged: [(key: String, keyNode: Node, value: YAMLValue)] = []
        var suggestedKeys = Set<String>()
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                error(YAMLValue(node: keyNode, path: v.path), "a key must be a plain name, found \(YAMLValue(node: keyNode, path: "").kindDescription)")
                continue
            }
            let key = keyScalar.string
            if key == "<<", keyNode.tagName == .merge || keyScalar.style == .plain {
                let sources: [Node]
                switch valueNode {
                case .mapping: sources = [valueNode]
                case .sequence(let s): sources = Array(s)
                default:
                    typeError(YAMLValue(node: valueNode, path: v.child("<<")), expected: "a mapping or a list of mappings to merge")
                    continue
                }
                for source in sources {
                    guard case .mapping(let sourceMapping) = source else {
                        typeError(YAMLValue(node: source, path: v.child("<<")), expected: "a mapping to merge")
                        continue
                    }
                    for (k, val) in sourceMapping {
                        guard let name = k.scalar?.string else { continue }
                        merged.append((name, k, YAMLValue(node: val, path: v.child(name))))
                    }
                }
                continue
            }
            let child = YAMLValue(node: valueNode, path: v.child(key))
            guard keys.contains(key) else {
                let keyValue = YAMLValue(node: keyNode, path: v.child(key))
                if let explanation = misplaced(key) {
                    error(keyValue, explanation.message, hint: explanation.hint)
                    continue
                }
                let suggestion = Suggestions.didYouMean(key, in: keys)
                if let closest = Suggestions.closest(to: key, in: keys) { suggestedKeys.insert(closest) }
                error(
                    keyValue, "unknown key '\(key)'",
                    hint: suggestion ?? "known keys here: \(keys.joined(separator: ", "))")
                continue
            }
            entries.append((key, keyNode, child))
        }
        for m in merged where !entries.contains(where: { $0.key == m.key }) {
            guard keys.contains(m.key) else {
                error(m.value, "unknown key '\(m.key)' (merged with '<<')", hint: Suggestions.didYouMean(m.key, in: keys))
                continue
            }
            entries.append(m)
        }
        return MappingView(value: v, entries: entries, suggestedKeys: suggestedKeys)
    }

    /// The list's items (each with its `[i]` path); a scalar or mapping is a type error.
    func sequence(_ v: YAMLValue, what: String) -> [YAMLValue]? {
        guard case .sequence(let sequence) = v.node else {
            typeError(v, expected: "a list (\(what))")
            return nil
        }
        return sequence.enumerated().map { YAMLValue(node: $0.element, path: v.element($0.offset)) }
    }

    /// Any non-null scalar as its text (YAML `yes`, `1` and `off` are kept as written).
    func string(_ v: YAMLValue, nonEmpty: Bool = true) -> String? {
        guard case .scalar(let s) = v.node, !v.isNull else {
            typeError(v, expected: "a text")
            return nil
        }
        if nonEmpty, s.string.trimmingCharacters(in: .whitespaces).isEmpty {
            error(v, "must not be empty")
            return nil
        }
        return s.string
    }

    /// A YAML string, nothing else: a plain `12345`, `1e3`, `true` or `~` is a number, boolean or null in YAML
    /// and is refused (with the quoted form as the fix), where the exact characters matter (passwords).
    func text(_ v: YAMLValue, hint: String) -> String? {
        guard case .scalar(let s) = v.node, v.node.tagName == .str else {
            // The kind only, never the value: this may be a secret.
            let kind: String = switch v.node {
            case .mapping: "a mapping"
            case .sequence: "a list"
            case .alias: "an alias"
            case .scalar: v.isNull ? "null" : v.node.tagName == .bool ? "a YAML boolean" : "a YAML number"
            }
            error(v, "expected a text, found \(kind)", hint: hint)
            return nil
        }
        return s.string
    }

    func int(_ v: YAMLValue, range: ClosedRange<Int>, hint: String? = nil) -> Int? {
        guard case .scalar(let s) = v.node, v.node.tagName == .int,
            let value = Int(s.string.replacingOccurrences(of: "_", with: ""))
        else {
            var hint = hint
            if case .scalar(let s) = v.node, Int(s.string) != nil { hint = "remove the quotes" }
            typeError(v, expected: "a whole number from \(range.lowerBound) to \(range.upperBound)", hint: hint)
            return nil
        }
        guard range.contains(value) else {
            error(v, "\(value) is out of range; allowed: \(range.lowerBound) to \(range.upperBound)", hint: hint)
            return nil
        }
        return value
    }

    func bool(_ v: YAMLValue) -> Bool? {
        guard case .scalar(let s) = v.node, v.node.tagName == .bool, s.style == .plain || s.style == .any else {
            typeError(v, expected: "true or false")
            return nil
        }
        switch s.string.lowercased() {
        case "true", "yes", "on": return true
        default: return false
        }
    }

    /// One of `choices` (with a did-you-mean suggestion).
    func choice(_ v: YAMLValue, _ choices: [String]) -> String? {
        guard case .scalar(let s) = v.node, !v.isNull else {
            typeError(v, expected: "one of: \(choices.joined(separator: ", "))")
            return nil
        }
        guard choices.contains(s.string) else {
            error(
                v, "'\(s.string)' is not one of: \(choices.joined(separator: ", "))",
                hint: Suggestions.didYouMean(s.string, in: choices))
            return nil
        }
        return s.string
    }

    func duration(_ v: YAMLValue, range: ClosedRange<Duration>) -> Duration? {
        guard case .scalar(let s) = v.node, !v.isNull else {
            typeError(v, expected: "a duration such as 500ms, 10s, 5m or 1h")
            return nil
        }
        guard let duration = DurationText.parse(s.string) else {
            var hint = "write a whole number and a unit: ms, s, m or h (e.g. 500ms, 10s, 5m, 1h)"
            if Int(s.string) != nil { hint = "durations need a unit, e.g. \(s.string)s" }
            error(v, "invalid duration '\(s.string)'", hint: hint)
            return nil
        }
        guard range.contains(duration) else {
            error(
                v,
                "\(s.string) is out of range; allowed: \(DurationText.format(range.lowerBound)) to \(DurationText.format(range.upperBound))"
            )
            return nil
        }
        return duration
    }

    /// Compiles a template and reports syntax errors at the exact column.
    func template(_ v: YAMLValue) -> Template? {
        guard let text = string(v) else { return nil }
        do {
            return try Template(text)
        } catch {
            if error.kind == .dittoPlaceholderSyntax {
                sink.error(
                    v.location(atOffset: error.offset), v.path,
                    "invalid template '\(text)': Ditto's '{{ ... }}' placeholder syntax is not used in this file",
                    hint: Self.translateDittoPlaceholder(text) ?? "write {name}, e.g. {deviceId}")
            } else {
                sink.error(v.location(atOffset: error.offset), v.path, "invalid template '\(text)': \(error)")
            }
            return nil
        }
    }

    /// `{{ thing:id }}` -> "write {thingId}", for users coming from Ditto's connection placeholders.
    static func translateDittoPlaceholder(_ text: String) -> String? {
        guard let open = text.range(of: "{{"), let close = text.range(of: "}}", range: open.upperBound..<text.endIndex)
        else { return nil }
        let inner = text[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
        let ours: String? =
            switch inner {
            case "thing:id", "entity:id": "{thingId}"
            case "thing:namespace", "entity:namespace": "{namespace}"
            case "thing:name", "entity:name": "{thingName}"
            case "connection:id": "{connectionId}"
            case "header:correlation-id": "{correlationId}"
            default: inner.hasPrefix("header:") ? "{\(inner)}" : nil
            }
        return ours.map { "write \($0) instead of {{ \(inner) }}" }
    }

    func topic(_ v: YAMLValue, allowWildcards: Bool, what: String) -> TopicTemplate? {
        guard let text = string(v) else { return nil }
        do {
            return try TopicTemplate(text, allowWildcards: allowWildcards)
        } catch {
            sink.error(v.location(atOffset: error.offset), v.path, "invalid \(what) '\(text)': \(error)")
            return nil
        }
    }

    func path(_ v: YAMLValue) -> PathTemplate? {
        guard let text = string(v) else { return nil }
        do {
            return try PathTemplate(text)
        } catch {
            sink.error(v.location(atOffset: error.offset), v.path, "invalid path '\(text)': \(error)")
            return nil
        }
    }

    /// Reports placeholders not in `known` (with the closest known name); `header:` placeholders pass when
    /// `allowHeaders`.
    @discardableResult
    func checkPlaceholders(
        _ placeholders: [(name: String, offset: Int?)], at v: YAMLValue, known: [String], allowHeaders: Bool = false,
        context: String? = nil, fallbackHint: String? = nil
    ) -> Bool {
        var ok = true
        for p in placeholders {
            if known.contains(p.name) { continue }
            if allowHeaders, p.name.hasPrefix("header:") { continue }
            ok = false
            let knownText = known.isEmpty ? "none" : known.map { "{\($0)}" }.joined(separator: ", ")
            var message = "unknown placeholder {\(p.name)}"
            if let context { message += " (\(context))" }
            message += "; known here: \(knownText)"
            if allowHeaders { message += ", {header:<name>}" }
            if p.name.hasPrefix("header:") { message = "{\(p.name)}: headers are not available here; known here: \(knownText)" }
            sink.error(
                v.location(atOffset: p.offset), v.path, message,
                hint: Suggestions.closest(to: p.name, in: known).map { "did you mean {\($0)}?" } ?? fallbackHint)
        }
        return ok
    }
}

extension Template {
    var placeholderOffsets: [(name: String, offset: Int?)] {
        placeholderParts.map { ($0.name, $0.offset) }
    }
}

extension TopicTemplate {
    var placeholderOffsets: [(name: String, offset: Int?)] {
        var result: [(name: String, offset: Int?)] = []
        var offset = 0
        for (index, level) in levels.enumerated() {
            let raw = source.split(separator: "/", omittingEmptySubsequences: false)
            let levelText = index < raw.count ? String(raw[index]) : ""
            switch level {
            case .capture(let t): result += t.placeholderParts.map { ($0.name, offset + $0.offset) }
            case .multiLevelCapture(let name): result.append((name, offset))
            default: break
            }
            offset += levelText.count + 1
        }
        return result
    }
}

extension PathTemplate {
    var placeholderOffsets: [(name: String, offset: Int?)] {
        (levels?.placeholderOffsets ?? []).map { ($0.name, $0.offset.map { $0 + 1 }) }
    }
}

/// Durations as written in the file: a whole number and a unit (`ms`, `s`, `m`, `h`).
public enum DurationText {
    /// `500ms`, `10s`, `5m`, `1h` -> Duration; nil for anything else.
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count)
        guard !digits.isEmpty, digits.count <= 9, let n = Int64(digits) else { return nil }
        switch unit {
        case "ms": return .milliseconds(n)
        case "s": return .seconds(n)
        case "m": return .seconds(n * 60)
        case "h": return .seconds(n * 3600)
        default: return nil
        }
    }

    /// The shortest exact text: `1h`, `90s`, `1500ms`.
    public static func format(_ duration: Duration) -> String {
        let ms = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if ms % 3_600_000 == 0, ms > 0 { return "\(ms / 3_600_000)h" }
        if ms % 60000 == 0, ms > 0 { return "\(ms / 60000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}

extension Node {
    /// The resolved tag's name (Yams keeps `Tag.name` internal).
    var tagName: Tag.Name { Tag.Name(rawValue: tag.rawValue) }
}
