/// Direction of a live message as it appears in the path: `inbox` = to the device (`TO`),
/// `outbox` = from the device (`FROM`).
public enum MessageDirection: String, Sendable, Hashable, CaseIterable {
    case inbox, outbox

    /// Ditto's `ditto-message-direction` header value.
    public var dittoHeaderValue: String { self == .inbox ? "TO" : "FROM" }
}

/// The addressing parts of a live message path.
public struct MessagePath: Sendable, Hashable {
    /// The feature the message is for, `nil` for thing-level messages.
    public var featureID: String?
    /// `inbox` (to the device) or `outbox` (from the device).
    public var direction: MessageDirection
    /// The subject, identical to the topic's.
    public var subject: String

    /// A message path from its parts.
    public init(featureID: String? = nil, direction: MessageDirection, subject: String) {
        self.featureID = featureID
        self.direction = direction
        self.subject = subject
    }

    /// `[/features/<featureID>]/<inbox|outbox>/messages/<subject>`.
    public var path: String {
        var p = ""
        if let featureID { p += "/features/" + featureID }
        return p + "/" + direction.rawValue + "/messages/" + subject
    }

    /// Reads a message path (`ImmutableMessagePath`): feature = segment after `features`, direction =
    /// the `inbox`/`outbox` segment, subject = everything after `messages`.
    public init?(parsing path: String) {
        let segments = Envelope.pathSegments(path)
        var i = 0
        var featureID: String?
        if segments.count >= 2 && segments[0] == "features" {
            featureID = segments[1]
            i = 2
        }
        guard i + 2 < segments.count, let direction = MessageDirection(rawValue: segments[i]),
            segments[i + 1] == "messages"
        else { return nil }
        self.featureID = featureID
        self.direction = direction
        self.subject = segments[(i + 2)...].joined(separator: "/")
    }
}

extension Envelope {
    /// The message path parts of a live message envelope, if `path` is one.
    public var messagePath: MessagePath? {
        guard topic.criterion == .messages else { return nil }
        return MessagePath(parsing: path)
    }

    // MARK: Live events

    /// A live event `<ns>/<name>/things/live/events/<action>` with the required `revision`.
    public static func liveEvent(
        thingID: ThingID, action: TopicPath.Action, path: String, value: JSONValue?, revision: Int64,
        timestamp: String? = nil, headers: DittoHeaders = DittoHeaders()
    ) -> Envelope {
        Envelope(
            topic: .liveEvent(thingID: thingID, action: action), headers: headers, path: path, value: value,
            revision: revision, timestamp: timestamp)
    }

    // MARK: Live commands

    /// A live command `<ns>/<name>/things/live/commands/<action>` (e.g. `modify` with a `value`,
    /// `retrieve` without). No `status`: that would make it a response.
    public static func liveCommand(
        thingID: ThingID, action: TopicPath.Action, path: String, value: JSONValue? = nil,
        headers: DittoHeaders = DittoHeaders()
    ) -> Envelope {
        Envelope(topic: .liveCommand(thingID: thingID, action: action), headers: headers, path: path, value: value)
    }

    // MARK: Live messages

    /// A live message; the subject is repeated in the path exactly as Ditto requires. When `headers` has no
    /// `content-type`, one matching the payload is set (JSON → `application/json`, text → `text/plain;
    /// charset=UTF-8`, bytes → `application/octet-stream`) so Ditto decodes `value` the intended way.
    ///
    /// Refuses subjects Ditto cannot route: empty, longer than 256, with control characters
    /// `\x00-\x1F\x7F-\xFF` or with `~` (which can never match the path); feature IDs with `/` or control
    /// characters.
    public static func liveMessage(
        thingID: ThingID, featureID: String? = nil, direction: MessageDirection, subject: String,
        payload: MessagePayload?, headers: DittoHeaders = DittoHeaders()
    ) throws(DittoError) -> Envelope {
        try validateSubject(subject)
        if let featureID, !ThingID.isValidName(featureID) || featureID.utf16.count > 256 {
            throw DittoError(
                status: 400, error: "things:feature.id.invalid",
                message: "The Feature ID '\(featureID)' is not valid!",
                description: "It must not contain '/' or control characters and be at most 256 characters long.")
        }
        var headers = headers
        if let payload, headers.contentType == nil {
            headers.contentType = payload.defaultContentType
        }
        let path = MessagePath(featureID: featureID, direction: direction, subject: subject).path
        return Envelope(
            topic: .liveMessage(thingID: thingID, subject: subject), headers: headers, path: path,
            value: payload?.envelopeValue)
    }

    static func validateSubject(_ subject: String) throws(DittoError) {
        guard !subject.isEmpty else {
            throw DittoError.unknownTopicPath("Missing message subject.")
        }
        if subject.utf16.count > 256 || subject.unicodeScalars.contains(where: { ThingID.isForbiddenNameScalar($0) && $0 != "/" })
            || subject.utf8.contains(UInt8(ascii: "~"))
        {
            throw DittoError.messageSubjectInvalid(subject)
        }
    }

    /// The response to a live message: same topic and path, the request's `correlation-id`, `status`, and
    /// the payload (with a matching `content-type` unless `headers` sets one).
    public static func messageResponse(
        to request: Envelope, status: Int, payload: MessagePayload?, headers: DittoHeaders = DittoHeaders()
    ) -> Envelope {
        var responseHeaders = DittoHeaders()
        if let correlationID = request.headers.correlationID { responseHeaders.correlationID = correlationID }
        responseHeaders.merge(headers)
        if let payload, responseHeaders.contentType == nil {
            responseHeaders.contentType = payload.defaultContentType
        }
        return Envelope(
            topic: request.topic, headers: responseHeaders, path: request.path, value: payload?.envelopeValue,
            status: status)
    }

    /// The response to a live command: same topic and path (Ditto matches both), the request's
    /// `correlation-id`, `status` and an optional `value` (e.g. for `retrieve`).
    public static func commandResponse(
        to request: Envelope, status: Int, value: JSONValue? = nil, headers: DittoHeaders = DittoHeaders()
    ) -> Envelope {
        var responseHeaders = DittoHeaders()
        if let correlationID = request.headers.correlationID { responseHeaders.correlationID = correlationID }
        responseHeaders.merge(headers)
        return Envelope(topic: request.topic, headers: responseHeaders, path: request.path, value: value, status: status)
    }

    // MARK: Acknowledgements

    /// An acknowledgement `<ns>/<name>/things/<channel>/acks/<label>`, path `/`, with `status`.
    /// Reserved labels → `acknowledgement:ditto.acklabel.forbidden`; labels outside
    /// `[a-zA-Z0-9-_:]{3,100}` → `acknowledgement:label.invalid`.
    public static func acknowledgement(
        thingID: ThingID, channel: TopicPath.Channel = .live, label: String, status: Int, value: JSONValue? = nil,
        headers: DittoHeaders = DittoHeaders()
    ) throws(DittoError) -> Envelope {
        try AcknowledgementLabel.validateForIssuing(label)
        return Envelope(
            topic: .acknowledgement(thingID: thingID, channel: channel, label: label), headers: headers, path: "/",
            value: value, status: status)
    }

    // MARK: Errors

    /// An error response `<ns>/<name>/things/<channel>/errors` (or Ditto's fallback
    /// `unknown/unknown/things/twin/errors` without a thing), path `/`, `status` and the error object.
    public static func errorResponse(
        thingID: ThingID?, channel: TopicPath.Channel = .live, error: DittoError,
        headers: DittoHeaders = DittoHeaders()
    ) -> Envelope {
        let topic = thingID.map { TopicPath.errors(thingID: $0, channel: channel) } ?? TopicPath.fallbackErrors
        return Envelope(topic: topic, headers: headers, path: "/", value: error.errorValue, status: error.status)
    }

    /// An error response answering `request`: its thing and channel, its `correlation-id`.
    public static func errorResponse(to request: Envelope, error: DittoError, headers: DittoHeaders = DittoHeaders())
        -> Envelope
    {
        var responseHeaders = DittoHeaders()
        if let correlationID = request.headers.correlationID { responseHeaders.correlationID = correlationID }
        responseHeaders.merge(headers)
        return errorResponse(
            thingID: request.thingID, channel: request.topic.channel == .none ? .twin : request.topic.channel,
            error: error, headers: responseHeaders)
    }

    /// An error response answering `request` that Ditto accepts: its headers stay within Ditto's 5 kB limit
    /// (beyond it Ditto answers 431 `headers.too.large`). When `headers` would exceed it they are left out; when even
    /// the request's `correlation-id` alone exceeds it, no response can reach the requester (Ditto routes
    /// responses by that id and would refuse it), and the result is nil.
    public static func errorResponseWithinLimits(
        to request: Envelope, error: DittoError, headers: DittoHeaders = DittoHeaders()
    ) -> Envelope? {
        let full = errorResponse(to: request, error: error, headers: headers)
        if (try? full.headers.checkSize()) != nil { return full }
        let minimal = errorResponse(to: request, error: error)
        if (try? minimal.headers.checkSize()) != nil { return minimal }
        return nil
    }

    /// The error carried by an error response envelope (`…/errors` with an error object as `value`).
    public var error: DittoError? {
        guard topic.criterion == .errors, let value else { return nil }
        return try? DittoError(errorValue: value)
    }
}

extension MessagePayload {
    /// The `content-type` of text, spelled as Ditto's connectivity spells its text fallback (`outgoingContentType`).
    public static let textContentType = "text/plain; charset=UTF-8"

    /// The `content-type` that makes Ditto read `envelopeValue` back into this payload.
    public var defaultContentType: String {
        switch self {
        case .json: return "application/json"
        case .text: return Self.textContentType
        case .binary: return "application/octet-stream"
        }
    }
}
