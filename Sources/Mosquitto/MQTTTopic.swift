import CMosquitto

/// MQTT's rules for topics and filters, checked before anything reaches the wire.
public enum MQTTTopic {
    /// A PUBLISH topic: non-empty, valid UTF-8 without NUL, no `+` or `#`, at most 65,535 bytes.
    public static func validatePublishTopic(_ topic: String) throws(MQTTError) {
        // In place: this runs for every publish.
        var topic = topic
        let (count, rc, hasNUL) = topic.withUTF8 { buffer -> (Int, Int32, Bool) in
            if buffer.isEmpty { return (0, MOSQ_ERR_SUCCESS.rawValue, false) }
            return (buffer.count,
                    buffer.withMemoryRebound(to: CChar.self) { mosquitto_pub_topic_check2($0.baseAddress, $0.count) },
                    buffer.contains(0))
        }
        guard count > 0 else { throw MQTTError(.invalidTopic, "empty topic") }
        guard count <= 65_535 else {
            throw MQTTError(.invalidTopic, "topic of \(count) bytes exceeds MQTT's 65535")
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue, !hasNUL else {
            throw MQTTError(.invalidTopic, "'\(topic)' is not a valid publish topic (no '+', '#' or NUL)")
        }
    }

    /// A SUBSCRIBE filter: `+` only as a whole level, `#` only as the last level; `$share/<group>/<filter>`
    /// with a non-empty group without wildcards.
    public static func validateFilter(_ filter: String) throws(MQTTError) {
        let bytes = Array(filter.utf8)
        guard !bytes.isEmpty else { throw MQTTError(.invalidTopic, "empty topic filter") }
        guard bytes.count <= 65_535 else {
            throw MQTTError(.invalidTopic, "topic filter of \(bytes.count) bytes exceeds MQTT's 65535")
        }
        if filter.hasPrefix("$share/") {
            let rest = filter.dropFirst("$share/".count)
            guard let slash = rest.firstIndex(of: "/"), slash != rest.startIndex,
                  !rest[..<slash].contains(where: { $0 == "+" || $0 == "#" }),
                  rest.index(after: slash) != rest.endIndex
            else {
                throw MQTTError(.invalidTopic, "'\(filter)' is not a valid shared subscription ($share/<group>/<filter>)")
            }
            try validateFilter(String(rest[rest.index(after: slash)...]))
            return
        }
        let rc = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { mosquitto_sub_topic_check2($0.baseAddress, $0.count) }
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue, !bytes.contains(0) else {
            throw MQTTError(.invalidTopic, "'\(filter)' is not a valid topic filter ('+' must be a whole level, '#' the last)")
        }
    }

    /// Whether `topic` matches `filter` (shared subscriptions match like their inner filter).
    public static func matches(filter: String, topic: String) -> Bool {
        var filter = filter
        if filter.hasPrefix("$share/") {
            let rest = filter.dropFirst("$share/".count)
            guard let slash = rest.firstIndex(of: "/") else { return false }
            filter = String(rest[rest.index(after: slash)...])
        }
        var result = false
        let rc = mosquitto_topic_matches_sub2(filter, filter.utf8.count, topic, topic.utf8.count, &result)
        return rc == MOSQ_ERR_SUCCESS.rawValue && result
    }
}
