import CMosquitto
import Glibc
import MQTT

/// An MQTT 5 reason code (CONNACK, PUBACK, SUBACK, ...). Below 0x80 is success.
public struct ReasonCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8

    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public var isFailure: Bool { rawValue >= 0x80 }

    public static let success = ReasonCode(rawValue: 0)
    public static let noMatchingSubscribers = ReasonCode(rawValue: 16)
    public static let unspecifiedError = ReasonCode(rawValue: 128)
    public static let unsupportedProtocolVersion = ReasonCode(rawValue: 132)
    public static let badUsernameOrPassword = ReasonCode(rawValue: 134)
    public static let notAuthorized = ReasonCode(rawValue: 135)
    public static let serverUnavailable = ReasonCode(rawValue: 136)
    public static let topicNameInvalid = ReasonCode(rawValue: 144)
    public static let quotaExceeded = ReasonCode(rawValue: 151)

    public var description: String {
        let text = String(cString: mosquitto_reason_string(Int32(rawValue)))
        return "\(text) (\(rawValue))"
    }
}

/// Everything that can go wrong with an MQTT client, with libmosquitto's own text where it has one.
public struct MQTTError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// A topic or filter that MQTT does not allow; nothing was sent.
        case invalidTopic
        /// A configuration value libmosquitto refuses (keepalive, TLS files, property values, ...).
        case invalidConfiguration
        /// The broker refused the connection (CONNACK reason code).
        case refused(ReasonCode)
        /// The broker answered a publish/subscribe with a failure reason code.
        case rejected(ReasonCode)
        /// libmosquitto returned an error (`mosq_err_t`).
        case library(Int32)
        /// The client was shut down (``MosquittoClient/disconnect()``) before the operation completed.
        case shutdown
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    static func library(_ rc: Int32, _ context: String) -> MQTTError {
        var text = String(cString: mosquitto_strerror(rc))
        if rc == MOSQ_ERR_ERRNO.rawValue {
            text += " (errno \(errno))"
        }
        return MQTTError(.library(rc), "\(context): \(text)")
    }

    public var description: String {
        switch kind {
        case .refused(let code): "connection refused by the broker: \(code)\(message.isEmpty ? "" : "; \(message)")"
        case .rejected(let code): "rejected by the broker: \(code)\(message.isEmpty ? "" : "; \(message)")"
        default: message
        }
    }
}

/// Throws when libmosquitto returned an error.
@inline(__always)
func check(_ rc: Int32, _ context: @autoclosure () -> String) throws(MQTTError) {
    if rc != MOSQ_ERR_SUCCESS.rawValue {
        throw MQTTError.library(rc, context())
    }
}

extension MQTTTopic {
    /// MQTT's topic name rule, failing with the client's error: nothing is sent to an invalid topic.
    static func validatePublishTopic(_ topic: String) throws(MQTTError) {
        do {
            try validateTopicName(topic)
        } catch {
            throw MQTTError(error, topic, isFilter: false)
        }
    }

    /// MQTT's topic filter rule, failing with the client's error: nothing is sent for an invalid filter.
    static func validateSubscribeFilter(_ filter: String) throws(MQTTError) {
        do {
            try validateFilter(filter)
        } catch {
            throw MQTTError(error, filter, isFilter: true)
        }
    }
}

extension MQTTError {
    fileprivate init(_ violation: TopicViolation, _ text: String, isFilter: Bool) {
        let kind = isFilter ? "topic filter" : "topic"
        let reason = switch violation {
        case .empty: "empty \(kind)"
        case .tooLong(let bytes): "\(kind) of \(bytes) bytes exceeds MQTT's \(MQTTTopic.maximumLength)"
        case .invalidSharedSubscription: "'\(text)' is not a valid shared subscription ($share/<group>/<filter>)"
        case .containsNUL, .wildcardInTopicName, .misplacedWildcard:
            isFilter ? "'\(text)' is not a valid topic filter ('+' must be a whole level, '#' the last)"
                : "'\(text)' is not a valid publish topic (no '+', '#' or NUL)"
        }
        self.init(.invalidTopic, reason)
    }
}
