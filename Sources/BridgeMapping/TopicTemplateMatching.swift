public import BridgeConfig
import MQTT

// Matching topics and paths against their templates, per message.

extension TopicTemplate {
    /// The values of the named levels if `topic` matches, else nil. MQTT rules apply: wildcards and captures
    /// do not match a first level starting with `$`; `#` also matches the parent level (`a/#` matches `a`).
    public func match(_ topic: String, fixed: [String: String] = [:]) -> [String: String]? {
        // Most topics fail on the level count: count the separators before splitting anything.
        switch levels.last {
        case .multiLevelWildcard?, .multiLevelCapture?:
            break
        default:
            var separators = 0
            for byte in topic.utf8 where byte == UInt8(ascii: "/") { separators += 1 }
            guard separators + 1 == levels.count else { return nil }
        }
        // Levels are taken one at a time as substrings (no array of them): literal levels compare without a copy;
        // only captured levels become Strings. This runs for every device answer on the downlink.
        var next: String.Index? = topic.startIndex
        func nextLevel() -> Substring? {
            guard let start = next else { return nil }
            if let slash = topic.utf8[start...].firstIndex(of: UInt8(ascii: "/")) {
                next = topic.utf8.index(after: slash)
                return topic[start..<slash]
            }
            next = nil
            return topic[start...]
        }
        var values = fixed
        // Room for the captures and what the rule adds (namespace, thingId, thingName, topic): no rehashing.
        values.reserveCapacity(fixed.count + levels.count + 4)
        for (index, level) in levels.enumerated() {
            if index == 0, !MQTTTopic.leadingWildcardsMatch(topic) {
                if case .literal = level {} else { return nil }
            }
            switch level {
            case .multiLevelWildcard:
                // Also when no level is left: `a/#` matches `a`.
                return values
            case .multiLevelCapture(let name):
                guard let start = next else { return nil }
                let rest = String(topic[start...])
                if let known = values[name], known != rest { return nil }
                values[name] = rest
                return values
            case .literal(let text):
                guard let found = nextLevel(), found == text else { return nil }
            case .singleLevelWildcard:
                guard nextLevel() != nil else { return nil }
            case .capture(let template):
                guard let found = nextLevel() else { return nil }
                if let bound = template.bindWhole(found, into: &values) {
                    guard bound else { return nil }
                } else {
                    guard let matched = template.match(String(found), fixed: values) else { return nil }
                    values = matched
                }
            }
        }
        // More levels than the template has.
        return next == nil ? values : nil
    }
}

extension PathTemplate {
    /// The values if `path` matches (a trailing `/` on `path` is ignored), else nil.
    public func match(_ path: String, fixed: [String: String] = [:]) -> [String: String]? {
        var body = Substring(path)
        guard body.hasPrefix("/") else { return nil }
        body = body.dropFirst()
        if body.hasSuffix("/") { body = body.dropLast() }
        guard let levels else { return body.isEmpty ? fixed : nil }
        guard !body.isEmpty else { return nil }
        return levels.match(String(body), fixed: fixed)
    }
}
