public import BridgeConfig
import MQTT

extension ResponseTopics {
    /// Whether the bridge may publish the answer to a request that arrived on `requestTopic` (with the rule's
    /// `variables`: its captures, `namespace`, `thingId`, `thingName`) on `responseTopic`.
    ///
    /// A response topic is a topic name: one with `+`, `#` or NUL, or an empty one, is never admitted. A captured
    /// value only ever matches one whole level of the response topic, compared as text: a value with `/`, `+` or
    /// `#` cannot widen a filter (it matches no level), and an empty value matches nothing.
    public func admits(_ responseTopic: String, requestTopic: String, variables: [String: String]) -> Bool {
        guard MQTTTopic.isValidTopicName(responseTopic) else { return false }
        let topicLevels = responseTopic.split(separator: "/", omittingEmptySubsequences: false)
        switch kind {
        case .deviceSpace(let levels):
            let request = requestTopic.split(separator: "/", omittingEmptySubsequences: false)
            let prefix = levels.map { request.prefix($0) } ?? request[...]
            return topicLevels.count >= prefix.count && topicLevels.prefix(prefix.count).elementsEqual(prefix)
        case .filters(let filters):
            return filters.contains { $0.covers(topicLevels, variables: variables) }
        }
    }
}
