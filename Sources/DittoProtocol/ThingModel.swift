/// Ditto's rules for the values inside a thing (`things/model`): what `ThingsModelFactory` checks when it reads a
/// thing, its features, definitions and policy id from JSON. Commands, events and responses carrying a thing
/// resource are read with these rules, so a value that breaks one is refused with the error below whatever
/// signal carries it (pass-through, events built from device payloads, responses built from device answers).
///
/// What is not modelled: the inline `_policy`, `_created`/`_modified` timestamps and `_metadata`.
public enum ThingModel {
    /// Whether `text` is a definition identifier (`ImmutableDefinitionIdentifier.ofParsed`): `namespace:name:version`,
    /// each part one or more of `[_a-zA-Z0-9\-.]`, or an HTTP(S) URL with a host.
    public static func isValidDefinitionIdentifier(_ text: String) -> Bool {
        isTriple(text) || isHTTPURL(text)
    }

    private static func isTriple(_ text: String) -> Bool {
        var parts = 1
        var partLength = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: ":") {
                guard partLength > 0 else { return false }
                parts += 1
                partLength = 0
                continue
            }
            let isElement = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
            guard isElement else { return false }
            partLength += 1
        }
        return parts == 3 && partLength > 0
    }

    /// `new java.net.URL(text)` succeeds, its protocol starts with `http` (only `http` and `https` have a handler)
    /// and its host is not empty. Java trims spaces and control characters around the text and reads the host from
    /// `//authority` up to `/`, `?` or `#`, without user info and port.
    private static func isHTTPURL(_ text: String) -> Bool {
        var bytes = Array(text.utf8)
        while let last = bytes.last, last <= 0x20 { bytes.removeLast() }
        while let first = bytes.first, first <= 0x20 { bytes.removeFirst() }
        var rest = bytes[...]
        if rest.count >= 4, String(decoding: rest.prefix(4), as: UTF8.self).lowercased() == "url:" {
            rest = rest.dropFirst(4)
        }
        guard let colon = rest.firstIndex(of: UInt8(ascii: ":")) else { return false }
        let scheme = String(decoding: rest[rest.startIndex..<colon], as: UTF8.self).lowercased()
        guard scheme == "http" || scheme == "https" else { return false }
        var afterScheme = rest[rest.index(after: colon)...]
        guard afterScheme.starts(with: "//".utf8) else { return false }
        afterScheme = afterScheme.dropFirst(2)
        let authorityEnd = afterScheme.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
            ?? afterScheme.endIndex
        var authority = afterScheme[afterScheme.startIndex..<authorityEnd]
        if let at = authority.lastIndex(of: UInt8(ascii: "@")) {
            authority = authority[authority.index(after: at)...]
        }
        var host = authority
        var port = authority[authority.endIndex...]
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else { return false }
            host = authority[authority.startIndex...close]
            let after = authority[authority.index(after: close)...]
            if let first = after.first {
                guard first == UInt8(ascii: ":") else { return false }
                port = after.dropFirst()
            }
        } else if let portColon = authority.firstIndex(of: UInt8(ascii: ":")) {
            host = authority[authority.startIndex..<portColon]
            port = authority[authority.index(after: portColon)...]
        }
        // Java reads the port with `Integer.parseInt` and refuses one below -1 (-1 is "none").
        if !port.isEmpty {
            guard let number = Int32(String(decoding: port, as: UTF8.self)), number >= -1 else { return false }
        }
        return !host.isEmpty
    }

    /// Whether `text` is a policy id: a namespaced entity id, the same rules as a thing id (`PolicyId.of`).
    public static func isValidPolicyID(_ text: String) -> Bool {
        (try? ThingID(text)) != nil
    }

    // MARK: reading values as Ditto does

    /// A whole thing (`ThingsModelFactory.newThing`): `thingId`, `policyId` and `definition` are strings (null for the
    /// last two) of their own grammar, `attributes` and `features` objects or null, every feature a feature.
    static func checkThing(_ object: JSONObject) throws(DittoError) {
        if let id = object["thingId"] {
            guard let text = id.stringValue else { throw wrongType(id, field: "thingId", type: "String") }
            _ = try ThingID(text)
        }
        if let policyID = object["policyId"], policyID != .null {
            guard let text = policyID.stringValue else { throw wrongType(policyID, field: "policyId", type: "String") }
            try checkPolicyID(text)
        }
        if let definition = object["definition"], definition != .null {
            guard let text = definition.stringValue else { throw notA("string", definition) }
            try checkDefinitionIdentifier(text)
        }
        if let attributes = object["attributes"], attributes != .null, attributes.objectValue == nil {
            throw wrongType(attributes, field: "attributes", type: "JsonObject")
        }
        if let features = object["features"], features != .null {
            guard let features = features.objectValue else { throw wrongType(features, field: "features", type: "JsonObject") }
            try checkFeatures(features)
        }
    }

    /// `/features`: every member a feature object or null.
    static func checkFeatures(_ object: JSONObject) throws(DittoError) {
        for (featureID, feature) in object where feature != .null {
            guard let feature = feature.objectValue else {
                throw DittoError.jsonInvalid("The Feature value is not an object for Feature with ID '\(featureID)': \(feature.jsonText)")
            }
            try checkFeature(feature)
        }
    }

    /// `/features/<id>`: `definition` an array (or null), `properties` and `desiredProperties` objects (or null).
    static func checkFeature(_ object: JSONObject) throws(DittoError) {
        if let definition = object["definition"], definition != .null {
            guard definition.arrayValue != nil else { throw wrongType(definition, field: "definition", type: "JsonArray") }
            try checkFeatureDefinition(definition)
        }
        for field in ["properties", "desiredProperties"] {
            if let value = object[field], value != .null, value.objectValue == nil {
                throw wrongType(value, field: field, type: "JsonObject")
            }
        }
    }

    /// A feature definition: a non-empty array of definition identifiers (null: none).
    static func checkFeatureDefinition(_ value: JSONValue) throws(DittoError) {
        guard value != .null else { return }
        guard let identifiers = value.arrayValue else { throw notA("array", value) }
        guard !identifiers.isEmpty else {
            throw DittoError(status: 400, error: "things:feature.definition.empty",
                             message: "Feature Definition must not be empty!",
                             description: "A Feature Definition must contain at least one element.")
        }
        for identifier in identifiers {
            // Ditto prints a non-string element as JSON and refuses it as an identifier.
            try checkDefinitionIdentifier(identifier.stringValue ?? identifier.jsonText)
        }
    }

    static func checkDefinitionIdentifier(_ text: String) throws(DittoError) {
        guard !isValidDefinitionIdentifier(text) else { return }
        throw DittoError(
            status: 400, error: "things:definition.identifier.invalid",
            message: "Definition identifier <\(text)> is invalid!",
            description: "An identifier string is expected to have the structure 'namespace:name:version' where each segment must contain at least one char of [_a-zA-Z0-9\\-.] OR it must be a valid HTTP(s) URL.")
    }

    static func checkPolicyID(_ text: String) throws(DittoError) {
        guard !isValidPolicyID(text) else { return }
        throw DittoError(
            status: 400, error: "policies:id.invalid", message: "Policy ID '\(text)' is not valid!",
            description: "It must conform to the namespaced entity ID notation (see Ditto documentation)")
    }

    private static func wrongType(_ value: JSONValue, field: String, type: String) -> DittoError {
        DittoError.jsonInvalid("Value <\(value.jsonText)> for </\(field)> is not of type <\(type)>!")
    }

    private static func notA(_ kind: String, _ value: JSONValue) -> DittoError {
        DittoError(status: 400, error: "json.format.invalid", message: "This JSON value is not \(kind == "array" ? "an" : "a") \(kind): \(value.jsonText)",
                   description: "Check if the JSON was valid (e.g. on https://jsonlint.com) and if it was in required format.")
    }
}

// MARK: - the thing a signal is about, and the statuses of command responses

extension Envelope {
    /// The `thingId` a thing value at `/` names, if it names one (a string); nil for other paths and values.
    public var valueThingID: String? {
        guard topic.group == .things, ThingResource(path: path) == .thing else { return nil }
        return value?.objectValue?["thingId"]?.stringValue
    }

    /// Whether Ditto takes the thing of this signal from `value.thingId` rather than from the topic: a thing
    /// `created`/`modified` event and a `create` response at `/` (`ThingCreated`, `ThingModified` and
    /// `CreateThingResponse` are read from the thing in the value). For such a signal `validate()` requires the
    /// `thingId`, and the thing it names is the one Ditto acts on, whatever the topic says.
    public var takesThingFromValue: Bool {
        guard topic.group == .things, let action = topic.action, ThingResource(path: path) == .thing else { return false }
        switch topic.criterion {
        case .events: return status == nil && (action == .created || action == .modified)
        case .commands: return status == 201 && action == .create
        default: return false
        }
    }

    /// The thing Ditto acts on for this signal: the value's `thingId` where Ditto takes it from there
    /// (``takesThingFromValue``), the topic's otherwise; nil without either.
    public var entityThingID: ThingID? {
        guard takesThingFromValue else { return topic.thingID }
        return valueThingID.flatMap { try? ThingID($0) }
    }

    /// `takesThingFromValue`: Ditto refuses such a signal whose value has no `thingId` (a `created` event: "Thing has
    /// no ID!", a `modified` event: "The entityId must not be null!", a create response: "Thing ID was not present
    /// in created Thing").
    func requireThingInValue() throws(DittoError) {
        guard takesThingFromValue, value?.objectValue?["thingId"] == nil else { return }
        if isResponse {
            throw DittoError(status: 400, error: "connectivity:message.mapping.failed",
                             message: "Thing ID was not present in created Thing",
                             description: "A create response carries the created thing with its thingId.")
        }
        throw DittoError(status: 400, error: "json.format.invalid",
                         message: topic.action == .created ? "Thing has no ID!" : "The entityId must not be null!",
                         description: "A thing \(topic.action?.rawValue ?? "") event at '/' carries the thing with its thingId: Ditto takes the thing from it, not from the topic.")
    }
}

/// The success statuses of Ditto's thing command responses (`CommandResponseHttpStatusValidator` in each
/// `<Action><Resource>Response`): a response with another status is not one Ditto can read
/// (`protocoladapter:illegal.adaptable`) and never reaches the requester.
public enum ThingCommandResponseStatus {
    /// Retrieve 200, create 201, modify 201 (created) or 204 (modified), merge and delete 204.
    public static func admitted(for action: TopicPath.Action) -> [Int]? {
        switch action {
        case .retrieve: [200]
        case .create: [201]
        case .modify: [201, 204]
        case .merge, .delete: [204]
        default: nil
        }
    }

    /// The admitted status closest to a device's success status `deviceStatus`: its own where admitted (a modify
    /// answered 201 created something), otherwise the action's usual one.
    public static func success(for action: TopicPath.Action, deviceStatus: Int) -> Int {
        guard let admitted = admitted(for: action) else { return deviceStatus }
        return admitted.contains(deviceStatus) ? deviceStatus : admitted[admitted.count - 1]
    }

    /// The status for a device answer without one.
    public static func usual(for action: TopicPath.Action) -> Int {
        admitted(for: action).map { $0[$0.count - 1] } ?? 200
    }
}
