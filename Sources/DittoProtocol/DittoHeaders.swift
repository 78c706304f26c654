/// Ditto headers: ordered, one value per name, looked up case-insensitively, written with the spelling
/// they were given (`AbstractDittoHeaders` indexes by lower case and keeps the original key).
///
/// Values are strings as in Ditto. JSON header values that are not strings are stringified (compact JSON)
/// and `null` values dropped, as `AbstractDittoHeadersBuilder#toMap` does; the original JSON value is kept
/// alongside so that re-encoding a decoded envelope reproduces every header exactly as it came in (a
/// bridge passes headers through; it does not retype them). Headers set through the API are written the
/// way Ditto's `toJson` writes them: typed known headers (booleans, JSON arrays/objects, numbers) as JSON,
/// everything else as strings.
public struct DittoHeaders: Sendable, Hashable, Sequence {
    /// One header as given: `name` in its original spelling.
    public typealias Element = (name: String, value: String)

    struct Entry: Sendable, Hashable {
        var name: String
        var key: String  // lower-cased name
        var value: String
        var json: JSONValue?  // the JSON value as decoded, if the header came from an envelope
        var definition: HeaderDefinition?  // looked up once, when set

        static func == (a: Entry, b: Entry) -> Bool { a.key.utf8Equals(b.key) && a.value.utf8Equals(b.value) }
        func hash(into hasher: inout Hasher) {
            key.hashUTF8(into: &hasher)
            value.hashUTF8(into: &hasher)
        }
    }

    private(set) var entries: [Entry] = []

    /// Equal when both have the same names (case-insensitively) with the same values, in any order, as
    /// Ditto compares its header maps.
    public static func == (lhs: DittoHeaders, rhs: DittoHeaders) -> Bool {
        guard lhs.entries.count == rhs.entries.count else { return false }
        for entry in lhs.entries {
            guard let i = rhs.position(ofKey: entry.key), rhs.entries[i].value.utf8Equals(entry.value) else {
                return false
            }
        }
        return true
    }

    /// Order-independent, consistent with `==`.
    public func hash(into hasher: inout Hasher) {
        var combined = 0
        for entry in entries { combined &+= entry.hashValue }
        hasher.combine(entries.count)
        hasher.combine(combined)
    }

    /// Headers total size limit in characters (`ditto.limits.messages.headers-size = 5k`; HOCON `k` = 1024).
    public static let sizeLimit = 5_120

    /// No headers.
    public init() {}

    /// Headers from name/value pairs; a later duplicate (case-insensitive) replaces the earlier value.
    public init(_ pairs: some Sequence<(String, String)>) {
        for (name, value) in pairs { self[name] = value }
    }

    /// Headers from the JSON `headers` object of an envelope: strings as they are, other values as
    /// compact JSON text, `null` dropped.
    public init(json: JSONObject) {
        entries.reserveCapacity(json.count)
        for (name, value) in json {
            switch value {
            case .null:
                continue
            case .string(let s):
                set(name, value: s, json: value)
            default:
                set(name, value: JSON.serializeToString(value), json: value)
            }
        }
    }

    /// The number of headers.
    public var count: Int { entries.count }

    /// Whether there are no headers.
    public var isEmpty: Bool { entries.isEmpty }

    /// Header names in their original spelling, in order.
    public var names: [String] { entries.map(\.name) }

    public func makeIterator() -> AnyIterator<Element> {
        var iterator = entries.makeIterator()
        return AnyIterator { iterator.next().map { ($0.name, $0.value) } }
    }

    /// A header name in lower case, as headers are compared; no copy when it already is (the common case).
    @inline(__always)
    public static func lowercase(_ name: String) -> String {
        // ASCII fast path: most header names are already lower-case ASCII. Scanned as bytes, not through
        // `String.Index`: every header lookup and every header set runs this.
        func isLowercaseASCII(_ byte: UInt8) -> Bool { byte < 0x80 && byte &- UInt8(ascii: "A") >= 26 }
        let lowercaseASCII = name.utf8.withContiguousStorageIfAvailable { $0.allSatisfy(isLowercaseASCII) }
            ?? name.utf8.allSatisfy(isLowercaseASCII)
        return lowercaseASCII ? name : name.lowercased()
    }

    /// Each header in order: its name as given, in lower case, its value, and whether Ditto defines it (both
    /// worked out when it was set, so callers need not lower-case or look up again).
    public func forEachHeader(_ body: (_ name: String, _ lowercasedName: String, _ value: String, _ isKnown: Bool) -> Void) {
        for entry in entries { body(entry.name, entry.key, entry.value, entry.definition != nil) }
    }

    private func position(ofKey key: String) -> Int? {
        // Lengths first: most entries differ in length from the name looked up, and this runs several times per header.
        let count = key.utf8.count
        for i in entries.indices where entries[i].key.utf8.count == count && entries[i].key.utf8Equals(key) { return i }
        return nil
    }

    private mutating func set(_ name: String, value: String, json: JSONValue?) {
        let key = Self.lowercase(name)
        if let i = position(ofKey: key) {
            // Like Ditto's builder: the value is replaced; the latest spelling of the name is kept.
            entries[i].name = name
            entries[i].value = value
            entries[i].json = json
        } else {
            let definition = HeaderDefinition.known(key)
            entries.append(Entry(name: name, key: key, value: value, json: json, definition: definition))
        }
    }

    /// The value of `name` (any case); setting `nil` removes the header.
    public subscript(name: String) -> String? {
        get {
            let key = Self.lowercase(name)
            guard let i = position(ofKey: key) else { return nil }
            return entries[i].value
        }
        set {
            if let newValue {
                set(name, value: newValue, json: nil)
            } else {
                removeValue(forName: name)
            }
        }
    }

    /// Whether `name` (any case) is present.
    public func contains(_ name: String) -> Bool { position(ofKey: Self.lowercase(name)) != nil }

    /// Removes `name` (any case) and returns its value.
    @discardableResult
    public mutating func removeValue(forName name: String) -> String? {
        guard let i = position(ofKey: Self.lowercase(name)) else { return nil }
        return entries.remove(at: i).value
    }

    /// Adds or replaces every header of `other`.
    public mutating func merge(_ other: DittoHeaders) {
        for entry in other.entries { set(entry.name, value: entry.value, json: entry.json) }
    }

    /// Gives the header `name` (any case) the name `newName`, keeping its place and value (JSON values as they
    /// came in); a header already called `newName` is replaced.
    public mutating func rename(_ name: String, to newName: String) {
        guard let i = position(ofKey: Self.lowercase(name)) else { return }
        let newKey = Self.lowercase(newName)
        if let j = position(ofKey: newKey), j != i {
            entries.remove(at: j)
            return rename(name, to: newName)
        }
        entries[i].name = newName
        entries[i].key = newKey
        entries[i].definition = HeaderDefinition.known(newKey)
    }

    /// Removes every header for which `shouldRemove(lower-cased name, value)` is true.
    public mutating func removeAll(where shouldRemove: (_ lowercasedName: String, _ value: String) -> Bool) {
        entries.removeAll { shouldRemove($0.key, $0.value) }
    }

    // MARK: JSON

    /// The JSON `headers` object: custom non-string values as they came in, typed known headers
    /// (booleans, JSON arrays/objects, numbers) as JSON of their type as Ditto's `toJson` writes them,
    /// everything else as strings.
    public var json: JSONObject {
        var object = JSONObject()
        object.reserveCapacity(entries.count)
        for entry in entries {
            object.appendNew(key: entry.name, value: Self.jsonValue(for: entry))
        }
        return object
    }

    static func jsonValue(for entry: Entry) -> JSONValue {
        if let json = entry.json { return json }
        guard let definition = entry.definition else { return .string(entry.value) }
        switch definition.type {
        case .boolean:
            if entry.value == "true" { return .bool(true) }
            if entry.value == "false" { return .bool(false) }
        case .jsonArray:
            if let parsed = try? JSON.parse(entry.value), case .array = parsed { return parsed }
            if entry.key == "requested-acks" || entry.key == "declared-acks" {
                return .array(Self.splitCommaList(entry.value).map { .string($0) })
            }
        case .jsonObject:
            if let parsed = try? JSON.parse(entry.value), case .object = parsed { return parsed }
        case .integer:
            if let number = JSONNumber(literal: entry.value), number.int64Value != nil { return .number(number) }
        default:
            break
        }
        return .string(entry.value)
    }

    static func splitCommaList(_ text: String) -> [String] {
        text.utf8Split(UInt8(ascii: ",")).map { $0.javaTrimmed() }.filter { !$0.isEmpty }
    }

    // MARK: Size

    /// Ditto's header size: the sum of name and value lengths (UTF-16 code units, as Java counts).
    public var encodedSize: Int {
        entries.reduce(0) { $0 + $1.name.utf16.count + $1.value.utf16.count }
    }

    /// 431 `headers.too.large` when `encodedSize` exceeds `limit`.
    public func checkSize(limit: Int = DittoHeaders.sizeLimit) throws(DittoError) {
        if encodedSize > limit { throw DittoError.headersTooLarge(limit: limit) }
    }
}

// MARK: - Typed accessors

extension DittoHeaders {
    /// `correlation-id`.
    public var correlationID: String? {
        get { self["correlation-id"] }
        set { self["correlation-id"] = newValue }
    }

    /// `content-type`.
    public var contentType: String? {
        get { self["content-type"] }
        set { self["content-type"] = newValue }
    }

    /// `reply-to` (the MQTT-5 response topic).
    public var replyTo: String? {
        get { self["reply-to"] }
        set { self["reply-to"] = newValue }
    }

    /// `channel` (`twin` or `live`).
    public var channel: String? {
        get { self["channel"] }
        set { self["channel"] = newValue }
    }

    /// `response-required` if it is exactly `true` or `false`; `nil` if absent or invalid.
    public var responseRequired: Bool? {
        get {
            switch self["response-required"] {
            case "true": return true
            case "false": return false
            default: return nil
            }
        }
        set { self["response-required"] = newValue.map { $0 ? "true" : "false" } }
    }

    /// Ditto's `isResponseRequired()`: true unless the header says (case-insensitively) `false`.
    public var isResponseRequired: Bool {
        self["response-required"]?.lowercased() != "false"
    }

    /// `requested-acks` as labels; accepts a JSON array or a comma-separated string (transport form).
    /// Setting writes a JSON array.
    public var requestedAcks: [String]? {
        get { self["requested-acks"].flatMap(Self.parseLabelList) }
        set {
            if let newValue {
                let array = JSONValue.array(newValue.map { .string($0) })
                set("requested-acks", value: JSON.serializeToString(array), json: nil)
            } else {
                removeValue(forName: "requested-acks")
            }
        }
    }

    static func parseLabelList(_ text: String) -> [String]? {
        let trimmed = text.javaTrimmed()
        if trimmed.utf8HasPrefix("[") {
            guard let parsed = try? JSON.parse(trimmed), let array = parsed.arrayValue else { return nil }
            var labels: [String] = []
            for element in array {
                guard let label = element.stringValue else { return nil }
                labels.append(label)
            }
            return labels
        }
        return splitCommaList(trimmed)
    }

    /// `timeout` as a Ditto duration; `nil` if absent or not a valid duration.
    public var timeout: DittoDuration? {
        get { self["timeout"].flatMap { DittoDuration(parsing: $0) } }
        set { self["timeout"] = newValue?.text }
    }

    /// `traceparent` (W3C trace context).
    public var traceparent: String? {
        get { self["traceparent"] }
        set { self["traceparent"] = newValue }
    }

    /// Headers whose name starts with `ditto-` (Ditto-internal or Ditto-written).
    public var dittoPrefixedNames: [String] {
        entries.filter { $0.key.utf8HasPrefix("ditto-") }.map(\.name)
    }
}

// MARK: - Known header definitions (Ditto's `DittoHeaderDefinition` and `MessageHeaderDefinition`)

struct HeaderDefinition: Sendable {
    enum ValueType: Sendable {
        case string, nonEmptyString, boolean, jsonArray, jsonObject, duration, integer
        case channel, liveChannelTimeoutStrategy, ifEqual, policyView

        /// Whether Ditto's `toJson` writes values of this type as JSON rather than as a string.
        var isTypedInJSON: Bool {
            switch self {
            case .boolean, .jsonArray, .jsonObject, .integer: return true
            default: return false
            }
        }
    }

    let type: ValueType
    /// Read from external (`readFromExternal`).
    let read: Bool
    /// Written to external (`writeToExternal`).
    let write: Bool

    static let known: [String: HeaderDefinition] = {
        var d: [String: HeaderDefinition] = [:]
        func def(_ key: String, _ type: ValueType, _ r: Bool, _ w: Bool) { d[key] = HeaderDefinition(type: type, read: r, write: w) }
        def("ditto-auth-context", .jsonObject, false, false)
        def("correlation-id", .nonEmptyString, true, true)
        def("response-required", .boolean, true, true)
        def("ditto-dry-run", .boolean, false, false)
        def("dry-run", .boolean, true, true)
        def("ditto-read-subjects", .jsonArray, false, false)
        def("ditto-read-revoked-subjects", .jsonArray, false, false)
        def("content-type", .string, true, true)
        def("accept", .string, true, false)
        def("authorization", .string, true, false)
        def("reply-to", .string, true, true)
        def("channel", .channel, true, true)
        def("live-channel-timeout-strategy", .liveChannelTimeoutStrategy, true, false)
        def("ditto-origin", .string, false, false)
        def("etag", .string, false, true)
        def("if-match", .string, true, false)
        def("if-none-match", .string, true, false)
        def("if-equal", .ifEqual, true, false)
        def("ditto-reply-target", .integer, false, false)
        def("divert-response-to-connection", .string, true, false)
        def("divert-expected-response-types", .string, true, false)
        def("diverted-response-from-connection", .string, true, true)
        def("ditto-expected-response-types", .jsonArray, false, false)
        def("ditto-inbound-payload-mapper", .string, false, false)
        def("ditto-originator", .string, false, true)
        def("requested-acks", .jsonArray, true, true)
        def("declared-acks", .jsonArray, true, false)
        def("timeout", .duration, true, true)
        def("ditto-entity-id", .string, false, false)
        def("www-authenticate", .string, false, true)
        def("location", .string, true, true)
        def("ditto-connection-id", .string, false, true)
        def("put-metadata", .jsonArray, true, false)
        def("get-metadata", .string, true, false)
        def("delete-metadata", .string, true, false)
        def("ditto-metadata", .jsonObject, false, true)
        def("allow-policy-lockout", .boolean, true, false)
        def("ditto-weak-ack", .boolean, false, true)
        def("ditto-event-journal-tags", .jsonArray, false, false)
        def("traceparent", .string, true, true)
        def("tracestate", .string, true, true)
        def("ditto-sudo", .boolean, false, false)
        def("ditto-retrieve-deleted", .boolean, false, false)
        def("ditto-ackgregator-address", .string, false, false)
        def("condition", .string, true, false)
        def("live-channel-condition", .string, true, false)
        def("live-channel-condition-matched", .boolean, false, true)
        def("at-historical-revision", .integer, true, false)
        def("at-historical-timestamp", .string, true, false)
        def("historical-headers", .jsonObject, false, true)
        def("entity-revision", .integer, false, true)
        def("ditto-pre-defined-extra-fields", .jsonArray, false, false)
        def("ditto-pre-defined-extra-fields-read-grant", .jsonObject, false, false)
        def("ditto-pre-defined-extra-fields-read-grant-object", .jsonObject, false, false)
        def("ditto-partial-access-paths", .jsonObject, false, false)
        def("merge-thing-patch-conditions", .jsonObject, true, false)
        def("policy-view", .policyView, true, false)
        def("ditto-policy-view-fields-selector", .string, false, false)
        // MessageHeaderDefinition
        def("ditto-message-direction", .string, false, true)
        def("ditto-message-subject", .string, false, true)
        def("ditto-message-thing-id", .string, false, true)
        def("ditto-message-feature-id", .string, false, true)
        def("timestamp", .string, true, true)
        def("status", .integer, true, true)
        return d
    }()

    /// `known`'s entry for a lower-cased name. Every header set looks its name up, several per message: comparing
    /// the bytes of the few known names of the same length costs less than hashing the name.
    @inline(__always)
    static func known(_ key: String) -> HeaderDefinition? {
        let count = key.utf8.count
        guard count < knownByLength.count else { return nil }
        for candidate in knownByLength[count] where key.utf8Equals(candidate.name) { return candidate.definition }
        return nil
    }

    private static let knownByLength: [[(name: String, definition: HeaderDefinition)]] = {
        var table = Array(repeating: [(name: String, definition: HeaderDefinition)](),
                          count: 1 + (known.keys.map(\.utf8.count).max() ?? 0))
        for (name, definition) in known { table[name.utf8.count].append((name, definition)) }
        return table
    }()
}

extension DittoHeaders {
    /// Whether `name` is Ditto-internal: any `ditto-*` header, or a known header Ditto never reads from
    /// outside (`read=false` in `DittoHeaderDefinition`, e.g. `etag`, `entity-revision`).
    public static func isDittoInternal(_ name: String) -> Bool {
        let key = lowercase(name)
        if key.utf8HasPrefix("ditto-") { return true }
        if let definition = HeaderDefinition.known(key) { return !definition.read }
        return false
    }

    /// Headers that must never cross between Ditto and the outside world besides ``isDittoInternal(_:)``'s: the
    /// ones Ditto's docs say never to set (`channel`, `raw-request-url`, `read-subjects`, `subject`,
    /// `timeout-access`; Ditto's protocol-specification and headers docs), the HTTP gateway's (`raw-request-uri`, `authorization`, conditional
    /// `if-match`/`if-none-match`), response diversion between connections, and the MQTT header-mapping
    /// placeholders of Ditto's connectivity (`mqtt.topic`, ...). The one list every layer uses.
    public static let neverForwardedNames: Set<String> = [
        "channel", "raw-request-url", "raw-request-uri", "read-subjects", "subject", "timeout-access",
        "authorization", "if-match", "if-none-match", "divert-response-to-connection",
        "divert-expected-response-types", "diverted-response-from-connection", "mqtt.topic", "mqtt.qos",
        "mqtt.retain", "mqtt.message-expiry-interval",
    ]

    /// Whether `name` is internal: Ditto-internal (``isDittoInternal(_:)``: `ditto-*`, known headers Ditto never
    /// reads from outside such as `etag` or `entity-revision`) or one of ``neverForwardedNames``.
    public static func isInternal(_ name: String) -> Bool {
        isDittoInternal(name) || neverForwardedNames.contains(lowercase(name))
    }

    /// Whether Ditto silently drops `name` when it comes from outside (known header with `read=false`).
    public static func isReadOnlyFromExternal(_ name: String) -> Bool {
        guard let definition = HeaderDefinition.known(lowercase(name)) else { return false }
        return !definition.read
    }

    /// Whether Ditto keeps `name` on input from outside (custom headers and known `read=true` ones).
    public static func isReadFromExternal(_ name: String) -> Bool { !isReadOnlyFromExternal(name) }

    /// Whether Ditto writes `name` to the outside (custom headers and known `write=true` ones).
    public static func isWrittenToExternal(_ name: String) -> Bool {
        guard let definition = HeaderDefinition.known(lowercase(name)) else { return true }
        return definition.write
    }

    /// Whether `name` is one of Ditto's defined headers.
    public static func isKnown(_ name: String) -> Bool { HeaderDefinition.known(lowercase(name)) != nil }

    /// The labels only Ditto may issue, stripped from `requested-acks` before signals leave Ditto.
    public static let dittoAcknowledgementLabels: Set<String> = ["twin-persisted", "live-response", "search-persisted"]

    /// These headers as Ditto would accept them from outside: known `read=false` headers dropped.
    public func filteredForInbound() -> DittoHeaders {
        var copy = self
        copy.entries.removeAll { Self.isReadOnlyFromExternal($0.key) }
        return copy
    }

    /// These headers as Ditto would write them outside: known `write=false` headers dropped, Ditto's own
    /// acknowledgement labels removed from `requested-acks` (`DittoAckRequestsFilter`).
    public func filteredForOutbound() -> DittoHeaders {
        var copy = self
        copy.entries.removeAll { !Self.isWrittenToExternal($0.key) }
        if let labels = copy.requestedAcks {
            copy.requestedAcks = labels.filter { !Self.dittoAcknowledgementLabels.contains($0) }
        }
        return copy
    }
}

// MARK: - Validation

extension DittoHeaders {
    /// Checks the values of known headers as Ditto's validators do; 400 `header.invalid` on the first bad one.
    public func validate() throws(DittoError) {
        for entry in entries {
            guard let definition = entry.definition else { continue }
            try Self.validate(entry, definition.type)
        }
    }

    private static func validate(_ entry: Entry, _ type: HeaderDefinition.ValueType) throws(DittoError) {
        let value = entry.value
        func invalid(_ typeName: String) -> DittoError {
            DittoError.headerInvalid(name: entry.name, value: value, type: typeName)
        }
        switch type {
        case .string:
            return
        case .nonEmptyString:
            if value.isEmpty {
                throw DittoError.headerInvalid(
                    name: entry.name, value: value, type: "String",
                    description: "The value of the header '\(entry.name)' must not be empty.")
            }
        case .boolean:
            guard value == "true" || value == "false" else { throw invalid("boolean") }
        case .jsonArray:
            if entry.key == "requested-acks" || entry.key == "declared-acks" {
                guard let labels = parseLabelList(value) else { throw invalid("JsonArray") }
                for label in labels where !AcknowledgementLabel.isValid(label, allowPlaceholder: true) {
                    throw DittoError.ackLabelInvalid(label)
                }
            } else {
                guard let parsed = try? JSON.parse(value), case .array = parsed else { throw invalid("JsonArray") }
            }
        case .jsonObject:
            guard let parsed = try? JSON.parse(value), case .object = parsed else { throw invalid("JsonObject") }
        case .duration:
            guard DittoDuration(parsing: value) != nil else { throw invalid("duration") }
        case .integer:
            guard let number = JSONNumber(literal: value), number.isIntegerLiteral, number.int64Value != nil else {
                throw invalid("int")
            }
        case .channel:
            guard value == "twin" || value == "live" else { throw invalid("channel") }
        case .liveChannelTimeoutStrategy:
            guard value == "fail" || value == "use-twin" else { throw invalid("LiveChannelTimeoutStrategy") }
        case .ifEqual:
            guard value == "update" || value == "skip" || value == "skip-minimizing-merge" else {
                throw invalid("IfEqual")
            }
        case .policyView:
            guard value == "original" || value == "resolved" else { throw invalid("PolicyView") }
        }
    }
}
