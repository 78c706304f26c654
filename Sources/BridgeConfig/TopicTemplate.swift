import Foundation
import MQTT

/// An MQTT topic with named levels, e.g. `devices/{deviceId}/telemetry/{sensor}`.
///
/// Levels are separated by `/`. A level is one of:
/// - literal text (`devices`);
/// - `+` (any one level, not captured) or `#` (the rest, last level only, not captured);
/// - a template with placeholders (`{deviceId}`, `dev-{id}`, `{id|lower}`): matches one level, compiled to `+`;
/// - `{name...}`: the rest of the topic (one or more levels, joined with `/`), last level only, compiled to `#`.
///
/// ``filter`` is the MQTT subscription filter; the mapping's `match(_:fixed:)` extracts the named values from a
/// concrete topic.
/// Templates without wildcards can also be rendered (``render(_:)``), e.g. for downlink topics.
public struct TopicTemplate: Sendable, Hashable, CustomStringConvertible {
    /// One `/`-separated level.
    public enum Level: Sendable, Hashable {
        case literal(String)
        /// `+`
        case singleLevelWildcard
        /// `#`
        case multiLevelWildcard
        /// A level with placeholders.
        case capture(Template)
        /// `{name...}`
        case multiLevelCapture(String)
    }

    /// The text as written.
    public let source: String
    /// The compiled levels.
    public let levels: [Level]
    /// The MQTT subscription filter, e.g. `devices/+/telemetry/+`.
    public let filter: String

    /// Compiles a topic template; wildcards (`+`, `#`) are rejected when `allowWildcards` is false
    /// (topics the bridge publishes to).
    public init(_ source: String, allowWildcards: Bool = true) throws(TemplateError) {
        self.source = source
        do {
            try MQTTTopic.validateTopicString(source)
        } catch {
            switch error {
            case .empty: throw TemplateError(.invalidTopic("a topic cannot be empty"))
            case .containsNUL: throw TemplateError(.invalidTopic("a topic cannot contain NUL"))
            default: throw TemplateError(.invalidTopic("a topic is limited to \(MQTTTopic.maximumLength) bytes"))
            }
        }
        let rawLevels = source.split(separator: "/", omittingEmptySubsequences: false)
        var levels: [Level] = []
        var offset = 0
        for (index, raw) in rawLevels.enumerated() {
            let isLast = index == rawLevels.count - 1
            let text = String(raw)
            defer { offset += text.count + 1 }
            if text == "+" || text == "#" {
                guard allowWildcards else {
                    throw TemplateError(
                        .invalidTopic("'\(text)' is a subscription wildcard; a topic the bridge publishes to cannot contain it"),
                        offset: offset)
                }
                if text == "#" {
                    guard isLast else {
                        throw TemplateError(
                            .invalidTopic("'#' must be the last level (e.g. 'a/b/#'), not 'a/#/b'"), offset: offset)
                    }
                    levels.append(.multiLevelWildcard)
                } else {
                    levels.append(.singleLevelWildcard)
                }
                continue
            }
            if text.hasPrefix("{"), text.hasSuffix("...}"), text.count > 5, !text.dropFirst().contains("{") {
                let name = String(text.dropFirst().dropLast(4))
                guard TemplateParser.isValidName(name), !name.hasPrefix("header:") else {
                    throw TemplateError(.invalidPlaceholderName(name), offset: offset + 1)
                }
                guard isLast else {
                    throw TemplateError(
                        .invalidTopic("{\(name)...} takes the rest of the topic, so it must be the last level"),
                        offset: offset)
                }
                levels.append(.multiLevelCapture(name))
                continue
            }
            let template: Template
            do {
                template = try Template(text)
            } catch {
                throw TemplateError(error.kind, offset: error.offset.map { $0 + offset })
            }
            for case .literal(let literal) in template.parts where literal.contains("+") || literal.contains("#") {
                throw TemplateError(
                    .invalidTopic(
                        "'\(text)': a wildcard must fill a whole level ('+' or '#'); use a placeholder such as {name} to match part of a level"
                    ), offset: offset)
            }
            if template.isConstant {
                levels.append(.literal(Self.literal(of: template)))
            } else {
                for p in template.placeholderParts where p.name.hasPrefix("header:") {
                    throw TemplateError(
                        .invalidTopic("{\(p.name)}: topic levels cannot use headers"), offset: offset + p.offset)
                }
                levels.append(.capture(template))
            }
        }
        self.levels = levels
        self.filter = levels.map { level in
            switch level {
            case .literal(let text): text
            case .singleLevelWildcard, .capture: "+"
            case .multiLevelWildcard, .multiLevelCapture: "#"
            }
        }.joined(separator: "/")
    }

    public var description: String { source }

    /// Placeholder names in order of first use.
    public var placeholders: [String] {
        var seen = Set<String>()
        var names: [String] = []
        for level in levels {
            switch level {
            case .capture(let t): for n in t.placeholders where seen.insert(n).inserted { names.append(n) }
            case .multiLevelCapture(let n): if seen.insert(n).inserted { names.append(n) }
            default: break
            }
        }
        return names
    }

    /// True when the template has `+` or `#` (it can be subscribed to but not rendered).
    public var hasWildcards: Bool {
        levels.contains { $0 == .singleLevelWildcard || $0 == .multiLevelWildcard }
    }

    /// The topic for these values. Values must not contain `+`, `#` or NUL; they may contain `/`
    /// (a subject such as `a/b` spans levels).
    public func render(_ values: [String: String]) throws(TemplateError) -> String {
        var out = ""
        for (index, level) in levels.enumerated() {
            if index > 0 { out.append("/") }
            switch level {
            case .literal(let text): out.append(text)
            case .singleLevelWildcard, .multiLevelWildcard:
                throw TemplateError(.invalidTopic("a topic with '+' or '#' cannot be rendered"))
            case .capture(let template):
                let text = try template.render(values)
                for case .placeholder(let p) in template.parts {
                    if let v = values[p.name], !MQTTTopic.isTopicNamePart(v) {
                        throw TemplateError(.invalidTopicValue(placeholder: p.name, value: v))
                    }
                }
                out.append(text)
            case .multiLevelCapture(let name):
                guard let v = values[name] else { throw TemplateError(.missingValue(name)) }
                guard MQTTTopic.isTopicNamePart(v) else { throw TemplateError(.invalidTopicValue(placeholder: name, value: v)) }
                out.append(v)
            }
        }
        return out
    }


    /// How specific the template is; a more specific template wins when two rules match the same topic.
    public var specificity: Specificity {
        var literalLevels = 0
        var partialLevels = 0
        var hasMultiLevel = false
        for level in levels {
            switch level {
            case .literal: literalLevels += 1
            case .capture(let t): if t.parts.contains(where: { if case .literal = $0 { true } else { false } }) { partialLevels += 1 }
            case .multiLevelWildcard, .multiLevelCapture: hasMultiLevel = true
            case .singleLevelWildcard: break
            }
        }
        return Specificity(
            literalLevels: literalLevels, partialLevels: partialLevels, fixedDepth: !hasMultiLevel,
            levels: levels.count)
    }

    /// Ordering of topic templates by specificity: more literal levels, then more levels that mix literal text
    /// and placeholders, then a fixed depth (no `#`), then more levels.
    public struct Specificity: Sendable, Hashable, Comparable, CustomStringConvertible {
        /// Levels of plain text.
        public var literalLevels: Int
        /// Levels mixing text and a placeholder (`t-{sensor}`).
        public var partialLevels: Int
        /// No `#` or `{x...}`.
        public var fixedDepth: Bool
        /// Number of levels.
        public var levels: Int

        public static func < (a: Specificity, b: Specificity) -> Bool {
            (a.literalLevels, a.partialLevels, a.fixedDepth ? 1 : 0, a.levels)
                < (b.literalLevels, b.partialLevels, b.fixedDepth ? 1 : 0, b.levels)
        }

        public var description: String {
            "\(literalLevels) literal level(s), \(partialLevels) partial, \(fixedDepth ? "fixed depth" : "open depth"), \(levels) level(s)"
        }
    }

    /// True when some topic matches both templates (placeholders inside a level are treated like `+`
    /// unless a literal level contradicts them).
    public func overlaps(_ other: TopicTemplate) -> Bool {
        var i = 0
        while true {
            let a = i < levels.count ? levels[i] : nil
            let b = i < other.levels.count ? other.levels[i] : nil
            switch (a, b) {
            case (nil, nil): return true
            case (.multiLevelWildcard?, _), (_, .multiLevelWildcard?): return true
            case (.multiLevelCapture?, let other): return other != nil
            case (let this, .multiLevelCapture?): return this != nil
            case (nil, _), (_, nil): return false
            case (.literal(let x)?, .literal(let y)?): if x != y { return false }
            case (.literal(let x)?, .capture(let t)?), (.capture(let t)?, .literal(let x)?):
                if t.invert(x) == nil { return false }
            default: break
            }
            i += 1
        }
    }

    private static func literal(of template: Template) -> String {
        template.parts.map { if case .literal(let s) = $0 { s } else { "" } }.joined()
    }
}

/// A Ditto resource path with named levels, e.g. `/features/{feature}/properties/{property...}`.
///
/// The same level grammar as ``TopicTemplate`` (`{name}`, `{name...}`, `+`, `#`), over a path that starts
/// with `/`. `/` alone is the thing itself.
public struct PathTemplate: Sendable, Hashable, CustomStringConvertible {
    /// The text as written.
    public let source: String
    /// The levels after the leading `/`; nil for `/` itself.
    package let levels: TopicTemplate?

    /// Compiles a path template; it must start with `/`.
    public init(_ source: String, allowWildcards: Bool = true) throws(TemplateError) {
        self.source = source
        guard source.hasPrefix("/") else {
            throw TemplateError(.invalidTopic("a path starts with '/', e.g. /features/{sensor}/properties/value"))
        }
        if source == "/" {
            levels = nil
            return
        }
        let body = String(source.dropFirst())
        guard !body.hasSuffix("/"), !body.contains("//") else {
            throw TemplateError(.invalidTopic("a path has no empty levels ('//' or a trailing '/')"))
        }
        do {
            levels = try TopicTemplate(body, allowWildcards: allowWildcards)
        } catch {
            var message = error
            if case .invalidTopic(let text) = error.kind {
                message = TemplateError(.invalidTopic(text.replacingOccurrences(of: "topic", with: "path")), offset: error.offset)
            }
            throw TemplateError(message.kind, offset: message.offset.map { $0 + 1 })
        }
    }

    public var description: String { source }

    /// Placeholder names in order of first use.
    public var placeholders: [String] { levels?.placeholders ?? [] }

    /// The path for these values.
    public func render(_ values: [String: String]) throws(TemplateError) -> String {
        guard let levels else { return "/" }
        return "/" + (try levels.render(values))
    }
}
