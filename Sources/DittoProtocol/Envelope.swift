/// A Ditto Protocol message ("adaptable"): topic, headers and payload fields.
///
/// Decoding reads the fields as `ImmutableJsonifiableAdaptable`/`ImmutablePayload` do (unknown fields are
/// ignored) and then applies the checks Ditto's adapters make (see `EnvelopeValidation.swift`), so an
/// envelope that decodes here is one Ditto accepts. Encoding writes Ditto's field order:
/// `topic, headers, path, value, extra, status, revision, timestamp, metadata, fields`.
public struct Envelope: Sendable, Hashable {
    /// What the message is about and what it is (`<ns>/<name>/things/live/messages/<subject>`, ...).
    public var topic: TopicPath
    /// Ditto headers (`correlation-id`, `content-type`, custom headers, ...).
    public var headers: DittoHeaders
    /// The JSON pointer text of `path` (`/` for the whole entity), kept as written: Ditto compares message
    /// paths as strings.
    public var path: String
    /// Command payload, event value, message payload (see `MessagePayload`) or error object.
    public var value: JSONValue? {
        didSet { valueText = nil }
    }
    /// `value` as the compact JSON text it was parsed from (``setValue(_:compactText:)``), copied by
    /// ``encoded()`` instead of walking `value`. Cleared by any change of `value`; not part of equality.
    public private(set) var valueText: ArraySlice<UInt8>?
    /// Enrichment (`extraFields`) of events and messages Ditto sends.
    public var extra: JSONObject?
    /// HTTP status; its presence makes the envelope a response (`DefaultAdapterResolver#isResponse`).
    public var status: Int?
    /// Entity revision; required for thing events.
    public var revision: Int64?
    /// ISO-8601 instant, e.g. `2021-01-18T09:42:12Z`.
    public var timestamp: String?
    /// Metadata object of events and responses.
    public var metadata: JSONValue?
    /// Field selector, e.g. `thingId,attributes(location)`.
    public var fields: String?

    /// Whether `headers` is written when empty. Ditto always writes it; a decoded envelope remembers whether
    /// its input had the field so that re-encoding gives back the same keys. Not part of equality.
    var writesEmptyHeaders = true

    /// An envelope from its fields; nothing is validated (see `validate()`).
    public init(
        topic: TopicPath, headers: DittoHeaders = DittoHeaders(), path: String = "/", value: JSONValue? = nil,
        extra: JSONObject? = nil, status: Int? = nil, revision: Int64? = nil, timestamp: String? = nil,
        metadata: JSONValue? = nil, fields: String? = nil
    ) {
        self.topic = topic
        self.headers = headers
        self.path = path
        self.value = value
        self.extra = extra
        self.status = status
        self.revision = revision
        self.timestamp = timestamp
        self.metadata = metadata
        self.fields = fields
    }

    public static func == (lhs: Envelope, rhs: Envelope) -> Bool {
        lhs.topic == rhs.topic && lhs.headers == rhs.headers && lhs.path.utf8Equals(rhs.path) && lhs.value == rhs.value
            && lhs.extra == rhs.extra && lhs.status == rhs.status && lhs.revision == rhs.revision
            && lhs.timestamp == rhs.timestamp && lhs.metadata == rhs.metadata && lhs.fields == rhs.fields
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(topic)
        hasher.combine(headers)
        path.hashUTF8(into: &hasher)
        hasher.combine(value)
        hasher.combine(status)
        hasher.combine(revision)
    }

    /// Sets `value` together with the text it was parsed from. `compactText` must be exactly what
    /// `JSON.serialize(value)` writes: the range ``JSON/parseKeepingCompactText(_:)`` returns.
    public mutating func setValue(_ value: JSONValue, compactText: ArraySlice<UInt8>?) {
        self.value = value
        valueText = compactText
    }

    /// Ditto's rule: a response (or ack, or error) exactly when `status` is present.
    public var isResponse: Bool { status != nil }

    /// The thing addressed by the topic, if valid.
    public var thingID: ThingID? { topic.thingID }

    // MARK: Decoding

    /// Decodes and validates one Ditto Protocol JSON message.
    public static func decode(_ bytes: some Collection<UInt8>) throws(DittoError) -> Envelope {
        let json: JSONValue
        do {
            json = try JSON.parse(bytes)
        } catch {
            throw DittoError.jsonInvalid("Failed to parse JSON string: \(error.description)")
        }
        return try decode(json: json)
    }

    /// Decodes and validates a Ditto Protocol message from an already parsed JSON value.
    public static func decode(json: JSONValue) throws(DittoError) -> Envelope {
        let envelope = try decodeFields(json: json)
        try envelope.validate()
        return envelope
    }

    /// Reads the fields only, with the checks of Ditto's JSON layer (types, presence of `topic`/`path`,
    /// header values) but without the adapter rules of `validate()`.
    public static func decodeFields(json: JSONValue) throws(DittoError) -> Envelope {
        guard case .object(let object) = json else {
            throw DittoError.jsonInvalid("The Ditto Protocol message is not a JSON object.")
        }
        // One pass over the members; unknown fields are ignored as Ditto does. (The field names are lower-case
        // ASCII, for which String's `==` is byte equality.)
        var topicValue, headersValue, pathValue, value, extraValue, statusValue, revisionValue, timestampValue,
            metadataValue, fieldsValue: JSONValue?
        for (key, member) in object {
            switch key {
            case "topic": topicValue = member
            case "headers": headersValue = member
            case "path": pathValue = member
            case "value": value = member
            case "extra": extraValue = member
            case "status": statusValue = member
            case "revision": revisionValue = member
            case "timestamp": timestampValue = member
            case "metadata": metadataValue = member
            case "fields": fieldsValue = member
            default: continue
            }
        }
        // Ditto reads the headers first, so invalid header values win over a bad topic.
        var headers = DittoHeaders()
        if let headersValue {
            guard case .object(let headersObject) = headersValue else {
                throw fieldTypeError("headers", headersValue, "JsonObject")
            }
            if let acks = headersObject["requested-acks"], !acks.isNull, acks.arrayValue == nil {
                // Inside the envelope `requested-acks` must be a JSON array (comma strings are transport-only).
                throw DittoError.headerInvalid(
                    name: "requested-acks", value: acks.stringValue ?? acks.jsonText, type: "JsonArray")
            }
            headers = DittoHeaders(json: headersObject)
            try headers.validate()
        }

        guard let topicValue else { throw DittoError.jsonFieldMissing("topic") }
        guard case .string(let topicString) = topicValue else { throw fieldTypeError("topic", topicValue, "String") }
        let topic = try TopicPath(parsing: topicString)

        guard let pathValue else { throw DittoError.jsonFieldMissing("path") }
        guard case .string(let path) = pathValue else { throw fieldTypeError("path", pathValue, "String") }

        var envelope = Envelope(topic: topic, headers: headers, path: path)
        envelope.writesEmptyHeaders = headersValue != nil
        envelope.value = value
        if let extraValue {
            guard case .object(let extra) = extraValue else { throw fieldTypeError("extra", extraValue, "JsonObject") }
            envelope.extra = extra
        }
        if let statusValue {
            guard case .number(let number) = statusValue, number.isIntegerLiteral, let code = number.int64Value,
                let small = Int(exactly: code)
            else { throw fieldTypeError("status", statusValue, "int") }
            // `HttpStatus.tryGetInstance`: an unknown code silently leaves the status out, so the message counts as a command.
            envelope.status = (100...599).contains(small) ? small : nil
        }
        if let revisionValue {
            guard case .number(let number) = revisionValue, number.isIntegerLiteral, let revision = number.int64Value
            else { throw fieldTypeError("revision", revisionValue, "long") }
            envelope.revision = revision
        }
        if let timestampValue {
            guard case .string(let timestamp) = timestampValue else {
                throw fieldTypeError("timestamp", timestampValue, "String")
            }
            guard Timestamp.isValidInstant(timestamp) else {
                throw DittoError.jsonInvalid("Text '\(timestamp)' could not be parsed as an ISO-8601 instant.")
            }
            envelope.timestamp = timestamp
        }
        if let metadataValue {
            guard case .object = metadataValue else { throw fieldTypeError("metadata", metadataValue, "JsonObject") }
            envelope.metadata = metadataValue
        }
        if let fieldsValue {
            guard case .string(let fields) = fieldsValue else { throw fieldTypeError("fields", fieldsValue, "String") }
            envelope.fields = fields
        }
        return envelope
    }

    private static func fieldTypeError(_ field: String, _ value: JSONValue, _ type: String) -> DittoError {
        DittoError.jsonInvalid("Value <\(value.jsonText)> for </\(field)> is not of type <\(type)>!")
    }

    // MARK: Encoding

    /// Compact JSON in Ditto's field order. An empty `headers` is written (as Ditto does) unless the envelope
    /// was decoded from input without it.
    public func encoded() -> [UInt8] {
        // Room for a typical event (topic, a few headers, path, a small value) without growing on the way.
        var w = JSONWriter(capacity: 512 + path.utf8.count)
        w.bytes.append(UInt8(ascii: "{"))
        w.writeKey("topic")
        topic.writeJSON(into: &w)
        if !headers.isEmpty || writesEmptyHeaders {
            w.bytes.append(UInt8(ascii: ","))
            w.writeKey("headers")
            w.bytes.append(UInt8(ascii: "{"))
            var first = true
            for entry in headers.entries {
                if !first { w.bytes.append(UInt8(ascii: ",")) }
                first = false
                w.writeString(entry.name)
                w.bytes.append(UInt8(ascii: ":"))
                if let json = entry.json {
                    w.write(json)
                } else if let definition = entry.definition, definition.type.isTypedInJSON {
                    w.write(DittoHeaders.jsonValue(for: entry))
                } else {
                    w.writeString(entry.value)
                }
            }
            w.bytes.append(UInt8(ascii: "}"))
        }
        w.bytes.append(UInt8(ascii: ","))
        w.writeKey("path")
        w.writeString(path)
        if let value {
            w.bytes.append(UInt8(ascii: ","))
            w.writeKey("value")
            w.write(value, compactText: valueText)
        }
        if let extra {
            w.bytes.append(UInt8(ascii: ","))
            w.writeKey("extra")
            w.write(extra)
        }
        if let status {
            w.bytes.append(UInt8(ascii: ","))
            w.writeKey("status")
            w.writeInteger(Int64(status))
        }
        if let revision {
            w.bytes.append(UInt8(ascii: ","))
            w.writeKey("revision")
            w.writeInteger(revision)
        }
        if let timestamp {
            w.bytes.append(UInt8(ascii: ","))
            w.writeKey("timestamp")
            w.writeString(timestamp)
        }
        if let metadata {
            w.bytes.append(UInt8(ascii: ","))
            w.writeKey("metadata")
            w.write(metadata)
        }
        if let fields {
            w.bytes.append(UInt8(ascii: ","))
            w.writeKey("fields")
            w.writeString(fields)
        }
        w.bytes.append(UInt8(ascii: "}"))
        return w.bytes
    }

    /// The envelope as a JSON value (same content and order as `encoded()`).
    public var json: JSONValue {
        var object = JSONObject()
        object["topic"] = .string(topic.description)
        if !headers.isEmpty || writesEmptyHeaders { object["headers"] = .object(headers.json) }
        object["path"] = .string(path)
        if let value { object["value"] = value }
        if let extra { object["extra"] = .object(extra) }
        if let status { object["status"] = .number(JSONNumber(status)) }
        if let revision { object["revision"] = .number(JSONNumber(revision)) }
        if let timestamp { object["timestamp"] = .string(timestamp) }
        if let metadata { object["metadata"] = metadata }
        if let fields { object["fields"] = .string(fields) }
        return .object(object)
    }
}

/// ISO-8601 instants as `java.time.Instant.parse` accepts them (`DateTimeFormatter.ISO_INSTANT`).
enum Timestamp {
    /// `YYYY-MM-DDTHH:MM[:SS[.fraction]](Z|±HH:MM[:SS])`.
    static func isValidInstant(_ text: String) -> Bool {
        var copy = text
        return copy.withUTF8 { isValidInstant($0) }
    }

    private static func isValidInstant(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
                v = v * 10 + Int(c - UInt8(ascii: "0"))
            }
            i += n
            return v
        }
        func expect(_ c: Character) -> Bool {
            guard i < b.count, b[i] == c.asciiValue else { return false }
            i += 1
            return true
        }
        if i < b.count && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) { i += 1 }
        guard digits(4) != nil, expect("-"), let month = digits(2), (1...12).contains(month), expect("-"),
            let day = digits(2), (1...31).contains(day), i < b.count, b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: "t")
        else { return false }
        i += 1
        guard let hour = digits(2), hour < 24, expect(":"), let minute = digits(2), minute < 60 else { return false }
        if i < b.count && b[i] == UInt8(ascii: ":") {
            i += 1
            guard let second = digits(2), second < 60 else { return false }
            if i < b.count && b[i] == UInt8(ascii: ".") {
                i += 1
                var count = 0
                while i < b.count && b[i] >= UInt8(ascii: "0") && b[i] <= UInt8(ascii: "9") {
                    i += 1
                    count += 1
                }
                guard (1...9).contains(count) else { return false }
            }
        }
        guard i < b.count else { return false }
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") { return i + 1 == b.count }
        guard b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") else { return false }
        i += 1
        guard let offsetHours = digits(2), offsetHours <= 18, expect(":"), let offsetMinutes = digits(2),
            offsetMinutes < 60
        else { return false }
        if i < b.count {
            guard expect(":"), let offsetSeconds = digits(2), offsetSeconds < 60 else { return false }
        }
        return i == b.count
    }
}
