/// What a thing signal is, derived once from an envelope's topic, path and `status` (Ditto's adapter
/// resolution, `DefaultAdapterResolver`), so that no layer re-derives it from strings.
public enum ThingSignal: Sendable, Hashable {
    /// A live message; `status` makes it the response to one.
    case message(MessagePath, status: Int?)
    /// A thing command (`modify`, `retrieve`, ...) on `path`; `status` makes it the response to one.
    case command(TopicPath.Action, path: String, status: Int?)
    /// A thing event (`modified`, `created`, ...) on `path`.
    case event(TopicPath.Action, path: String)
    /// An acknowledgement with its label, or aggregated acknowledgements (no label).
    case acknowledgement(label: String?, status: Int)
    /// An error response.
    case error(DittoError)

    /// Whether this answers a request (a response, an acknowledgement or an error), rather than being one.
    public var isAnswer: Bool {
        switch self {
        case .message(_, let status), .command(_, _, let status): return status != nil
        case .event: return false
        case .acknowledgement, .error: return true
        }
    }
}

extension Envelope {
    /// The signal this envelope carries, for the `things` group's commands, events, messages, acknowledgements
    /// and errors; nil for anything else (policies, connections, search, streaming) and for an envelope that
    /// does not pass ``validate()``'s shape (a message without a message path, an error without its object).
    public var thingSignal: ThingSignal? {
        guard topic.group == .things else { return nil }
        switch topic.criterion {
        case .messages:
            guard let messagePath else { return nil }
            return .message(messagePath, status: status)
        case .commands:
            guard let action = topic.action, !action.isEventAction else { return nil }
            return .command(action, path: path, status: status)
        case .events:
            guard let action = topic.action, action.isEventAction else { return nil }
            return .event(action, path: path)
        case .acks:
            guard let status else { return nil }
            return .acknowledgement(label: topic.subject, status: status)
        case .errors:
            guard status != nil, let error else { return nil }
            return .error(error)
        case .search, .streaming, .announcements:
            return nil
        }
    }
}
