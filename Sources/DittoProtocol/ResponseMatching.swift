extension Envelope {
    /// Whether Ditto would route this envelope back as the answer to `request`
    /// (`CommandAndCommandResponseMatchingValidator`, `AcknowledgementAggregatorActor`):
    ///
    /// - it is a response (`status` present) about the same thing;
    /// - its `correlation-id` equals the request's (for live commands it may also start with it);
    /// - error responses (`…/errors`) and acknowledgements need nothing more;
    /// - a message response must be a message with the same subject and the same addressing kind (thing,
    ///   feature or claim); the `inbox`/`outbox` direction is not compared;
    /// - a command response must have the same channel, action and resource path.
    public func answers(_ request: Envelope) -> Bool {
        guard isResponse, !request.isResponse else { return false }
        guard topic.group == request.topic.group, topic.namespace.utf8Equals(request.topic.namespace),
            topic.entityName.utf8Equals(request.topic.entityName)
        else { return false }
        guard let requestID = request.headers.correlationID, let responseID = headers.correlationID else {
            return false
        }
        let sameID = responseID.utf8Equals(requestID)
        switch topic.criterion {
        case .errors, .acks:
            return sameID
        case .messages:
            guard sameID, request.topic.criterion == .messages,
                let subject = topic.subject, let requestSubject = request.topic.subject, subject.utf8Equals(requestSubject),
                let path = messagePath, let requestPath = request.messagePath
            else { return false }
            return path.addressingKind == requestPath.addressingKind
        case .commands:
            guard sameID || responseID.utf8HasPrefix(requestID), request.topic.criterion == .commands,
                topic.channel == request.topic.channel, topic.action == request.topic.action
            else { return false }
            return normalizedPath.utf8Equals(request.normalizedPath)
        default:
            return false
        }
    }
}

extension MessagePath {
    /// Thing-level, feature-level, or the thing-level `claim` subject: a response must keep the kind.
    public enum AddressingKind: Sendable, Hashable {
        case thing, feature, claim
    }

    /// The addressing kind of this path (`claim` only at thing level, as in `MessageCommandAdapter`).
    public var addressingKind: AddressingKind {
        if featureID != nil { return .feature }
        return subject.utf8Equals("claim") ? .claim : .thing
    }
}

extension Envelope {
    /// Decodes a Ditto Protocol message given as text.
    public static func decode(_ text: String) throws(DittoError) -> Envelope {
        try decode(Array(text.utf8))
    }
}
