#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Yams

extension ConfigLoader {

    /// Header name characters (RFC 9110 token); patterns may also use `*`.
    static func isHeaderToken(_ name: String) -> Bool {
        !name.isEmpty
            && name.unicodeScalars.allSatisfy {
                $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "!#$%&'*+-.^_`|~".unicodeScalars.contains($0))
            }
    }

    /// Reads a `headers:` block on top of `base`: keys given replace the base's, `rename` and `static` merge
    /// by name (this block wins). Reports contradictions in the result at this block's entries.
    func headerPolicy(_ v: YAMLValue?, base: HeaderPolicy, known: [String]) -> HeaderPolicy {
        guard let v, !v.isNull, let m = reader.mapping(v, keys: ConfigSchema.headers) else { return base }
        var policy = base
        var allowEntries: [(HeaderPattern, YAMLValue)] = []
        var denyEntries: [(HeaderPattern, YAMLValue)] = []

        func patterns(_ key: String) -> [(HeaderPattern, YAMLValue)]? {
            guard let lv = m[key] else { return nil }
            if lv.isNull { return [] }
            if case .scalar(let scalar) = lv.node {
                reader.typeError(lv, expected: "a list", hint: "write [\"\(scalar.string)\"]")
                return nil
            }
            guard let items = reader.sequence(lv, what: "header names or patterns such as x-*") else { return nil }
            var result: [(HeaderPattern, YAMLValue)] = []
            for item in items {
                guard let text = reader.string(item) else { continue }
                guard Self.isHeaderToken(text) else {
                    reader.error(item, "'\(text)' is not a header name or pattern", hint: "letters, digits, '-', '_', '.', and '*' as wildcard")
                    continue
                }
                result.append((HeaderPattern(text), item))
            }
            return result
        }
        if let allow = patterns("allow") {
            allowEntries = allow
            policy.allow = allow.map(\.0)
            for (pattern, item) in allow where !pattern.isWildcard && ReservedHeaders.isInternal(pattern.pattern) {
                reader.error(
                    item, "'\(pattern)' is one of Ditto's internal headers and is never forwarded",
                    hint: "remove it from allow")
            }
            for (pattern, item) in allow where pattern.isWildcard && pattern.pattern.hasPrefix("x-ditto") {
                reader.warning(
                    item, "'\(pattern)' lets no x-ditto-* header cross: those cross only by their exact name",
                    hint: "list each x-ditto-* header that must cross by name, e.g. x-ditto-foo")
            }
        }
        if let deny = patterns("deny") {
            denyEntries = deny
            policy.deny = deny.map(\.0)
        }
        if let t = m["trace-context"], let on = reader.bool(t) { policy.traceContext = on }
        if let mv = m["mqtt311"] {
            let modeValue: YAMLValue?
            if case .mapping = mv.node {
                modeValue = reader.mapping(mv, keys: ConfigSchema.mqtt311)?["mode"]
            } else {
                modeValue = mv
            }
            if let modeValue, let mode = reader.choice(modeValue, ["none", "topic", "wrapper"]) {
                policy.mqtt311 = MQTT311HeaderMode(rawValue: mode) ?? .none
            }
        }
        if let rv = m["rename"], !rv.isNull, case .mapping = rv.node,
            let rm = reader.mapping(rv, keys: reader.peekMapping(rv)?.entries.map(\.key) ?? [])
        {
            var targets: [String: String] = [:]
            for (from, to) in policy.rename { targets[to.lowercased()] = from }
            for entry in rm.entries {
                let from = entry.key
                guard let to = reader.string(entry.value) else { continue }
                let keyValue = YAMLValue(node: entry.keyNode, path: entry.value.path)
                guard Self.isHeaderToken(from), !from.contains("*") else {
                    reader.error(keyValue, "'\(from)' is not a header name")
                    continue
                }
                guard Self.isHeaderToken(to), !to.contains("*") else {
                    reader.error(entry.value, "'\(to)' is not a header name")
                    continue
                }
                if ReservedHeaders.isReserved(from) {
                    reader.error(
                        keyValue, "'\(from)' is managed by Ditto or the bridge and cannot be renamed")
                    continue
                }
                if ReservedHeaders.isReserved(to) {
                    let kind = ReservedHeaders.isInternal(to) ? "one of Ditto's internal headers" : "set by the bridge itself"
                    reader.error(
                        entry.value, "cannot rename '\(from)' onto '\(to)', which is \(kind)",
                        hint: "choose a custom name such as x-\(from)")
                    continue
                }
                if let other = targets[to.lowercased()], other != from.lowercased() {
                    reader.error(entry.value, "'\(other)' and '\(from)' are both renamed onto '\(to)'")
                    continue
                }
                targets[to.lowercased()] = from.lowercased()
                policy.rename[from.lowercased()] = to
            }
        } else if let rv = m["rename"], !rv.isNull {
            reader.typeError(rv, expected: "a mapping of header name to new name, e.g. {x-a: x-b}")
        }
        if let sv = m["static"], !sv.isNull, case .mapping = sv.node,
            let sm = reader.mapping(sv, keys: reader.peekMapping(sv)?.entries.map(\.key) ?? [])
        {
            for entry in sm.entries {
                let name = entry.key
                let keyValue = YAMLValue(node: entry.keyNode, path: entry.value.path)
                guard Self.isHeaderToken(name), !name.contains("*") else {
                    reader.error(keyValue, "'\(name)' is not a header name")
                    continue
                }
                if ReservedHeaders.isReserved(name) {
                    reader.error(
                        keyValue, "'\(name)' is managed by Ditto or the bridge and cannot be set as a static header")
                    continue
                }
                guard let template = reader.template(entry.value) else { continue }
                guard
                    reader.checkPlaceholders(
                        template.placeholderOffsets, at: entry.value, known: known, allowHeaders: true,
                        fallbackHint: v.path == "headers" ? "headers that use topic values belong in a rule's headers.static" : nil)
                else { continue }
                policy.staticHeaders.removeAll { $0.name.lowercased() == name.lowercased() }
                policy.staticHeaders.append(StaticHeader(name: name, value: template))
            }
        } else if let sv = m["static"], !sv.isNull {
            reader.typeError(sv, expected: "a mapping of header name to value, e.g. {x-gateway: \"{deviceId}\"}")
        }

        // Contradictions in the effective policy, reported at the entries of this block.
        for (pattern, item) in allowEntries where !pattern.isWildcard {
            if let deny = policy.deny.first(where: { $0.matches(pattern.pattern) }) {
                reader.error(
                    item, "'\(pattern)' is both allowed and denied (deny '\(deny)')",
                    hint: "remove it from one of the lists; deny would win")
            }
        }
        for (pattern, item) in denyEntries where !pattern.isWildcard {
            if allowEntries.isEmpty, policy.allow.contains(where: { !$0.isWildcard && $0.pattern == pattern.pattern }) {
                reader.error(item, "'\(pattern)' is both allowed and denied", hint: "remove it from one of the lists")
            }
        }
        if m.has("rename") || m.has("deny") {
            for (from, _) in policy.rename where !policy.allows(from) {
                sink.warning(
                    (m["rename"] ?? v).location, (m["rename"] ?? v).path,
                    "'\(from)' is renamed but never passes allow/deny, so the rename never applies")
            }
        }
        return policy
    }
}
