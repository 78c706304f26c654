public import DittoProtocol

/// Why a message could not be mapped. Each case carries what a log line needs to explain the drop, and
/// converts to the Ditto error response a waiting requester gets.
public struct MappingError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// No uplink rule's topic matches; or no downlink rule serves the thing, feature, subject or path.
        case noRule = "no-rule"
        /// The payload does not have the form the rule reads (invalid JSON, not a number, missing pointer, ...).
        case invalidPayload = "invalid-payload"
        /// More than Ditto accepts (250 kB payload).
        case payloadTooLarge = "payload-too-large"
        /// A topic segment or value that makes an invalid thing ID, feature ID, subject or path.
        case invalidIdentifier = "invalid-identifier"
        /// A pass-through message for another thing than the topic allows.
        case thingMismatch = "thing-mismatch"
        /// Not valid Ditto Protocol, or headers Ditto would reject.
        case invalidProtocol = "invalid-protocol"
        /// A template could not be rendered with what the message carries.
        case template = "template"
        /// A request names an MQTT 5 response topic its rule does not admit (`response-topics`).
        case responseTopicRefused = "response-topic-refused"
    }

    public var kind: Kind
    public var reason: String
    /// The Ditto error a requester gets for this failure.
    public var dittoError: DittoError

    public init(_ kind: Kind, _ reason: String, dittoError: DittoError? = nil) {
        self.kind = kind
        self.reason = reason
        self.dittoError = dittoError ?? MappingError.defaultDittoError(kind, reason)
    }

    public init(protocolError: DittoError) {
        self.init(.invalidProtocol, protocolError.message, dittoError: protocolError)
    }

    public var description: String { "\(kind.rawValue): \(reason)" }

    private static func defaultDittoError(_ kind: Kind, _ reason: String) -> DittoError {
        switch kind {
        case .noRule:
            return DittoError(status: 404, error: "bridge:route.notfound", message: reason,
                              description: "No downlink rule of the bridge serves this request.")
        case .payloadTooLarge:
            return DittoError(status: 413, error: "messages:payload.toolarge", message: reason,
                              description: "Reduce the size of the payload.")
        case .responseTopicRefused:
            return DittoError(status: 403, error: "bridge:responsetopic.notallowed", message: reason,
                              description: "A device may name only response topics of its own topic space, or those its rule's response-topics admit.")
        case .invalidIdentifier, .thingMismatch, .invalidPayload, .invalidProtocol, .template:
            return DittoError(status: 400, error: "bridge:mapping.failed", message: reason,
                              description: "The bridge could not map this message; check its mapping rules.")
        }
    }
}
