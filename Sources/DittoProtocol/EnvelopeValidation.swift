/// The checks Ditto's protocol adapters make after the JSON layer (`DefaultAdapterResolver`, the adapters
/// in `protocol/adapter/**` and their mapping strategies), as far as this module models them:
///
/// - adapter resolution by group / channel / criterion / action / response-ness (`unknown.topicpath`);
/// - thing resource paths for commands and events (`unknown.path`), policy top-level resources; a path with an
///   empty segment (`/features//properties`) is not a JSON pointer (`json.pointer.invalid`);
/// - the JSON kind of the value per thing resource, for commands, events and responses alike
///   (`json.format.invalid`, see ``ThingResource/valueKind``), and what a thing, its features and definitions
///   hold (``ThingModel``: `things:definition.identifier.invalid`, `policies:id.invalid`, ...);
/// - a response's status is one its response type admits (``ThingCommandResponseStatus``), a response that
///   carries a resource carries one Ditto can read (`protocoladapter:illegal.adaptable`);
/// - Ditto takes the thing of a `created`/`modified` event and a create response at `/` from `value.thingId`
///   (``Envelope/takesThingFromValue``), which must be there (`json.format.invalid`);
/// - which thing events exist for a resource (`policyIdCreated` does not, `unknown.topicpath`);
/// - events need `revision` (`json.field.missing`);
/// - modifying thing commands need a `value` (`json.invalid`), `create`/`modify` of a whole thing must not
///   carry a different `thingId` (`things:id.notsettable`), merges need `application/merge-patch+json` (415);
/// - live messages need a subject and a path that repeats it (`invalid.path`), the subject must be a valid
///   `ditto-message-subject` header value;
/// - acknowledgements need `status` and a valid, non-reserved label;
/// - error responses need `status` (without it no adapter resolves: `unknown.topicpath`) and an error object
///   with `error`;
/// - thing IDs built from the topic are valid (`things:id.invalid`).
extension Envelope {
    /// Applies the adapter-level checks; throws the `DittoError` Ditto would answer with.
    public func validate() throws(DittoError) {
        try validate(value: true)
    }

    /// `value: false` leaves out what an event's value must be (``EventRules`` checks it per event).
    func validate(value checksValue: Bool) throws(DittoError) {
        switch topic.group {
        case .things: try validateThings(checksValue: checksValue)
        case .policies: try validatePolicies()
        case .connections: try validateConnections()
        }
    }

    private var noAdapter: DittoError { DittoError.unknownTopicPath(topic: topic.description, path: normalizedPath) }

    /// The path as Ditto's `MessagePath.toString()` prints it after splitting like a topic.
    var normalizedPath: String {
        Self.isNormalized(path) ? path : Self.normalize(path)
    }

    static func normalize(_ path: String) -> String {
        let segments = Envelope.pathSegments(path)
        if segments.isEmpty { return "/" }
        var out = ""
        for segment in segments {
            out.append("/")
            out.append(JSONPointer.escape(segment))
        }
        return out
    }

    /// Whether `normalize` would give `path` back: a `/`, then non-empty segments without `~`, no trailing `/`.
    /// Every request's path is checked, and most are already in this form: no split, no copy.
    static func isNormalized(_ path: String) -> Bool {
        var bytes = path.utf8.makeIterator()
        guard bytes.next() == UInt8(ascii: "/") else { return false }
        var afterSlash = true
        while let byte = bytes.next() {
            if byte == UInt8(ascii: "/") {
                if afterSlash { return false }
                afterSlash = true
            } else {
                if byte == UInt8(ascii: "~") { return false }
                afterSlash = false
            }
        }
        return !afterSlash
    }

    /// Ditto reads `path` with the topic splitter (`newTopicOrPathPointer`): `""`/`"/"` are the root, a
    /// trailing `/` is ignored and a `//` makes the rest one segment.
    static func pathSegments(_ path: String) -> [String] {
        TopicPath.segments(of: path, insertEmptyFirst: false)
    }

    private func requireValidThingID() throws(DittoError) {
        // Wildcard topics (`<ns>/_/…`, RetrieveThings, search) carry no single thing.
        guard !topic.isWildcard else { return }
        _ = try ThingID(namespace: topic.namespace, name: topic.entityName)
    }

    // MARK: things

    private func validateThings(checksValue: Bool) throws(DittoError) {
        switch (topic.criterion, topic.channel) {
        case (.search, .twin):
            return
        case (.streaming, .twin), (.streaming, .none):
            try requireValidThingID()
            return
        case (_, .none), (.search, _), (.streaming, _), (.announcements, _):
            throw noAdapter
        case (.messages, .twin):
            throw noAdapter
        default:
            break
        }
        try requireValidThingID()
        switch topic.criterion {
        case .commands: try validateThingCommand()
        case .events: try validateThingEvent(checksValue: checksValue)
        case .messages: try validateMessage()
        case .acks: try validateAcknowledgement()
        case .errors: try validateErrorResponse()
        case .search, .streaming, .announcements: throw noAdapter
        }
    }

    private func validateThingCommand() throws(DittoError) {
        guard let action = topic.action,
            [.create, .retrieve, .modify, .merge, .delete, .migrate].contains(action)
        else { throw noAdapter }
        try requireResourcePointer()
        guard let resource = ThingResource(path: path) else { throw DittoError.unknownPath(normalizedPath) }
        if action == .create && resource != .thing {
            // There is no create<SubResource> command: sub-resources are created with `modify`.
            throw DittoError.unknownCommand("things.commands:create\(resource.typeSuffix)")
        }
        // A thing's policy id is set, never removed: there is no `deletePolicyId`.
        if action == .delete && resource == .policyID { throw noAdapter }
        if action == .migrate && resource != .thing {
            throw DittoError.unknownCommand("things.commands:migrate\(resource.typeSuffix)")
        }
        if let status {
            try validateThingCommandResponse(action: action, resource: resource, status: status)
            return
        }
        switch action {
        case .create, .modify:
            guard let value else {
                throw DittoError.jsonInvalid("The command '\(action.rawValue)' at path '\(normalizedPath)' requires a value.")
            }
            try requireValue(value, of: resource)
            if resource == .thing, let object = value.objectValue {
                if let idValue = object["thingId"] {
                    guard let id = idValue.stringValue, id.utf8Equals("\(topic.namespace):\(topic.entityName)") else {
                        throw DittoError.thingIDNotSettable()
                    }
                }
            }
        case .merge:
            guard let value else {
                throw DittoError.jsonInvalid("The command '\(action.rawValue)' at path '\(normalizedPath)' requires a value.")
            }
            // A merge patch's null deletes; what it sets is read with the model's rules.
            if value == .null {
                if resource == .thing {
                    throw DittoError(status: 400, error: "things:merge.invalid",
                                     message: "The provided json value can not be applied at this resource",
                                     description: "A merge patch for a whole thing is a JSON object.")
                }
                if resource == .policyID {
                    throw DittoError(status: 400, error: "things:policyId.notdeletable",
                                     message: "The Policy ID of a Thing cannot be deleted.",
                                     description: "Set another Policy ID instead.")
                }
            } else {
                try requireValue(value, of: resource)
            }
            guard ContentTypeStrategy(contentType: headers.contentType) == .jsonMergePatch else {
                throw DittoError.mediaTypeUnsupported(headers.contentType, allowed: ["application/merge-patch+json"])
            }
        default:
            break
        }
    }

    /// A thing command response is read as its `<Action><Resource>Response`: only the statuses its type admits
    /// (``ThingCommandResponseStatus``), the resource it carries read with the model's rules (a retrieved whole
    /// thing only as an object), and a create response names the created thing in its value. Anything else is
    /// `protocoladapter:illegal.adaptable`, a create response without `thingId` a mapping failure.
    private func validateThingCommandResponse(action: TopicPath.Action, resource: ThingResource,
                                              status: Int) throws(DittoError) {
        // A wildcard retrieve (RetrieveThings) answers with a list.
        guard !topic.isWildcard else { return }
        let signal = "things.responses:\(action.rawValue)\(resource.typeSuffix)"
        if let admitted = ThingCommandResponseStatus.admitted(for: action), !admitted.contains(status) {
            throw DittoError.illegalAdaptable(
                signal: signal, reason: "status \(status) is not one of \(admitted.map(String.init).joined(separator: ", "))",
                description: "A \(action.rawValue) response has the status \(admitted.map(String.init).joined(separator: " or ")).")
        }
        let carriesResource = (status == 201 && (action == .create || action == .modify)) || (status == 200 && action == .retrieve)
        if carriesResource {
            if let value {
                do throws(DittoError) {
                    if action == .retrieve && resource == .thing {
                        try requireValueKind(value, of: resource)
                    } else if action == .retrieve && resource == .feature && value == .null {
                        throw DittoError.jsonInvalid("Payload value is not a Feature as JSON object but: null")
                    } else {
                        try requireValue(value, of: resource)
                    }
                } catch {
                    throw DittoError.illegalAdaptable(signal: signal, reason: error.message, description: error.description)
                }
            } else if action != .modify {
                throw DittoError.illegalAdaptable(signal: signal, reason: "the response carries no value",
                                                  description: "A \(action.rawValue) response with status \(status) carries the resource.")
            }
        } else if action == .modify, let value, value != .null {
            throw DittoError.illegalAdaptable(signal: signal, reason: "a response with status 204 carries no value",
                                              description: "A modify response with a value has the status 201.")
        }
        try requireThingInValue()
    }

    private func validateThingEvent(checksValue: Bool) throws(DittoError) {
        guard let action = topic.action,
            [.created, .modified, .deleted, .merged, .migrated].contains(action)
        else { throw noAdapter }
        try requireResourcePointer()
        guard let resource = ThingResource(path: path) else { throw DittoError.unknownPath(normalizedPath) }
        guard resource.supportsEvent(action) else { throw noAdapter }
        guard revision != nil else { throw DittoError.jsonFieldMissing("revision") }
        if checksValue, action == .created || action == .modified {
            guard let value else { throw Self.eventWithoutValue(action) }
            try requireValue(value, of: resource)
            try requireThingInValue()
        }
    }

    /// A `created` or `modified` event carries what was created or modified.
    static func eventWithoutValue(_ action: TopicPath.Action) -> DittoError {
        DittoError.jsonInvalid("The event '\(action.rawValue)' requires a value.")
    }

    /// Thing command and event paths are JSON pointers to a resource; an empty segment (`//`) is not one.
    private func requireResourcePointer() throws(DittoError) {
        _ = try JSONPointer(path)
    }

    /// The value of a resource read as Ditto's model reads it: its JSON kind, then the model's rules for what is
    /// inside (``ThingModel``).
    fileprivate func requireValue(_ value: JSONValue, of resource: ThingResource) throws(DittoError) {
        try requireValueKind(value, of: resource)
        switch (resource, value) {
        case (.thing, .object(let object)): try ThingModel.checkThing(object)
        case (.features, .object(let object)): try ThingModel.checkFeatures(object)
        case (.feature, .object(let object)): try ThingModel.checkFeature(object)
        case (.featureDefinition, _): try ThingModel.checkFeatureDefinition(value)
        case (.definition, .string(let text)): try ThingModel.checkDefinitionIdentifier(text)
        case (.policyID, .string(let text)): try ThingModel.checkPolicyID(text)
        default: break
        }
    }

    /// Ditto's mapping strategies read the value as the resource's JSON kind (`asObject()`, `asString()`, ...);
    /// another kind fails with `json.format.invalid` ("This JSON value is not an object: 42").
    fileprivate func requireValueKind(_ value: JSONValue, of resource: ThingResource) throws(DittoError) {
        guard !resource.valueKind.admits(value) else { return }
        throw DittoError(
            status: 400, error: "json.format.invalid",
            message: "This JSON value is not \(resource.valueKind.dittoName): \(value.jsonText)",
            description: "Check that the value at path '\(normalizedPath)' is \(resource.valueKind.article).")
    }

    private func validateMessage() throws(DittoError) {
        guard let subject = topic.subject else {
            throw DittoError.unknownTopicPath("Missing message subject.", topic: topic.description)
        }
        if subject.utf16.count > 256 || subject.unicodeScalars.contains(where: { ThingID.isForbiddenNameScalar($0) && $0 != "/" }) {
            throw DittoError.messageSubjectInvalid(subject)
        }
        let printed = normalizedPath
        let valid: Bool
        // String comparison on code units, as Ditto's `validatePathForLiveMessages` does.
        if printed.utf8HasPrefix("/features/") {
            valid = printed.utf8HasSuffix("/inbox/messages/", subject) || printed.utf8HasSuffix("/outbox/messages/", subject)
        } else {
            valid = printed.utf8Equals("/inbox/messages/", subject) || printed.utf8Equals("/outbox/messages/", subject)
        }
        guard valid else {
            throw DittoError.invalidPath(
                printed, description: "It should match the pattern: (/features/[^/]+)?/(inbox|outbox)/messages/\(subject)")
        }
    }

    private func validateAcknowledgement() throws(DittoError) {
        // Both ack adapters only take responses: without `status` nothing resolves.
        guard isResponse else { throw noAdapter }
        guard let label = topic.subject else { return }  // aggregated acknowledgements
        if AcknowledgementLabel.reserved.contains(label) { throw DittoError.ackLabelForbidden(label) }
        guard AcknowledgementLabel.isValid(label, allowPlaceholder: true) else { throw DittoError.ackLabelInvalid(label) }
    }

    private func validateErrorResponse() throws(DittoError) {
        // The error adapters only take responses: without `status` nothing resolves.
        guard isResponse else { throw noAdapter }
        guard let value else { throw DittoError.jsonFieldMissing("value") }
        _ = try DittoError(errorValue: value)
    }

    // MARK: policies and connections

    private func validatePolicies() throws(DittoError) {
        switch topic.criterion {
        case .commands:
            guard let action = topic.action,
                [.create, .retrieve, .modify, .delete, .checkPermissions].contains(action)
            else { throw noAdapter }
            let segments = Envelope.pathSegments(path)
            if let first = segments.first, !["entries", "imports", "subjectAliases"].contains(first) {
                throw DittoError.unknownPath(normalizedPath)
            }
        case .events:
            guard let action = topic.action, [.created, .modified, .deleted].contains(action) else { throw noAdapter }
        case .errors:
            try validateErrorResponse()
        case .announcements:
            guard topic.subject != nil else { throw noAdapter }
        case .streaming:
            return
        case .messages, .acks, .search:
            throw noAdapter
        }
    }

    private func validateConnections() throws(DittoError) {
        switch topic.criterion {
        case .announcements:
            guard let subject = topic.subject, subject == "opened" || subject == "closed" else { throw noAdapter }
        case .streaming:
            return
        default:
            throw noAdapter
        }
    }
}

extension Envelope {
    /// ``Envelope/validate()`` for many thing events on one topic and path, split in two: what depends on the
    /// topic and path only (thing ID, action, resource), checked once here, and what each event adds (its
    /// revision, and its value's kind for `created`/`modified`), checked by ``validate(_:)``. Together they throw
    /// exactly what `validate()` throws for the event.
    public struct EventRules: Sendable {
        let action: TopicPath.Action
        let resource: ThingResource

        /// Throws what `validate()` throws for any event on `event`'s topic and path, whatever its value.
        public init(validating event: Envelope) throws(DittoError) {
            var probe = event
            probe.value = nil
            probe.revision = 0
            try probe.validate(value: false)
            // A valid thing event has an action and a resource path.
            guard event.topic.group == .things, event.topic.criterion == .events, let action = event.topic.action,
                  let resource = ThingResource(path: event.path)
            else {
                throw DittoError.unknownTopicPath(topic: event.topic.description, path: event.normalizedPath)
            }
            self.action = action
            self.resource = resource
        }

        /// Throws what `validate()` throws for `event`, an event on the topic and path these rules were made for.
        public func validate(_ event: Envelope) throws(DittoError) {
            guard event.revision != nil else { throw DittoError.jsonFieldMissing("revision") }
            guard action == .created || action == .modified else { return }
            guard let value = event.value else { throw Envelope.eventWithoutValue(action) }
            if resource.hasModelRules {
                try event.requireValue(value, of: resource)
            } else if !admits(value) {
                try event.requireValueKind(value, of: resource)
            }
            try event.requireThingInValue()
        }

        /// Whether `validate` accepts an event with a revision and `value` on this topic and path by its JSON kind
        /// alone. False where the model also reads what the value holds (a thing, features, a feature,
        /// definitions, a policy id): only `validate` decides those.
        public func admits(_ value: JSONValue) -> Bool { admits(value.kind) }

        /// The same for a value of `kind`.
        public func admits(_ kind: JSON.Kind) -> Bool {
            guard action == .created || action == .modified else { return true }
            return !resource.hasModelRules && resource.valueKind.admits(kind)
        }
    }
}

/// The resources of a thing addressed by `path` (`ThingResource.java`).
enum ThingResource: Sendable, Hashable {
    case thing, policyID, definition
    case policy, policyEntries, policyEntry, policyEntrySubjects, policyEntrySubject, policyEntryResources,
        policyEntryResource
    case attributes, attribute
    case features, feature, featureDefinition, featureProperties, featureProperty, featureDesiredProperties,
        featureDesiredProperty

    /// The resource `path` addresses (split like Ditto's `newTopicOrPathPointer`), `nil` if none.
    init?(path: String) {
        var copy = path
        guard let resource = copy.withUTF8({ ThingResource.parse($0) }) else { return nil }
        self = resource
    }

    private static func parse(_ b: UnsafeBufferPointer<UInt8>) -> ThingResource? {
        var cursor = TopicPath.SegmentCursor(b, insertEmptyFirst: false)
        func equals(_ range: Range<Int>, _ name: StaticString) -> Bool {
            guard range.count == name.utf8CodeUnitCount else { return false }
            let p = name.utf8Start
            for k in 0..<range.count where b[range.lowerBound + k] != p[k] { return false }
            return true
        }
        guard let first = cursor.next() else { return .thing }
        if equals(first, "policyId") { return cursor.next() == nil ? .policyID : nil }
        if equals(first, "definition") { return cursor.next() == nil ? .definition : nil }
        if equals(first, "attributes") { return cursor.next() == nil ? .attributes : .attribute }
        if equals(first, "_policy") {
            guard let entries = cursor.next() else { return .policy }
            guard equals(entries, "entries") else { return nil }
            guard cursor.next() != nil else { return .policyEntries }
            guard let kind = cursor.next() else { return .policyEntry }
            if equals(kind, "subjects") { return cursor.next() == nil ? .policyEntrySubjects : .policyEntrySubject }
            if equals(kind, "resources") { return cursor.next() == nil ? .policyEntryResources : .policyEntryResource }
            return nil
        }
        if equals(first, "features") {
            guard cursor.next() != nil else { return .features }
            guard let kind = cursor.next() else { return .feature }
            if equals(kind, "definition") { return cursor.next() == nil ? .featureDefinition : nil }
            if equals(kind, "properties") { return cursor.next() == nil ? .featureProperties : .featureProperty }
            if equals(kind, "desiredProperties") {
                return cursor.next() == nil ? .featureDesiredProperties : .featureDesiredProperty
            }
            return nil
        }
        return nil
    }

    /// Ditto's resource name as used in command types (`ThingResourceNames`).
    var typeSuffix: String {
        switch self {
        case .thing: return "Thing"
        case .policyID: return "PolicyId"
        case .definition: return "ThingDefinition"
        case .policy: return "Policy"
        case .policyEntries: return "PolicyEntries"
        case .policyEntry: return "PolicyEntry"
        case .policyEntrySubjects: return "PolicyEntrySubjects"
        case .policyEntrySubject: return "PolicyEntrySubject"
        case .policyEntryResources: return "PolicyEntryResources"
        case .policyEntryResource: return "PolicyEntryResource"
        case .attributes: return "Attributes"
        case .attribute: return "Attribute"
        case .features: return "Features"
        case .feature: return "Feature"
        case .featureDefinition: return "FeatureDefinition"
        case .featureProperties: return "FeatureProperties"
        case .featureProperty: return "FeatureProperty"
        case .featureDesiredProperties: return "FeatureDesiredProperties"
        case .featureDesiredProperty: return "FeatureDesiredProperty"
        }
    }

    /// The JSON kind Ditto's mapping strategies read a value of this resource as.
    var valueKind: ValueKind {
        switch self {
        case .thing, .attributes, .features, .feature, .featureProperties, .featureDesiredProperties: return .object
        case .policyID, .definition: return .string
        case .featureDefinition: return .array
        case .attribute, .featureProperty, .featureDesiredProperty: return .any
        // The inline policy's own model checks its parts; this module does not model them.
        case .policy, .policyEntries, .policyEntry, .policyEntrySubjects, .policyEntrySubject,
            .policyEntryResources, .policyEntryResource:
            return .any
        }
    }

    enum ValueKind: Sendable, Hashable {
        case object, string, array, any

        func admits(_ value: JSONValue) -> Bool { admits(value.kind) }

        func admits(_ kind: JSON.Kind) -> Bool {
            switch self {
            // Ditto's model reads a null object or array as an empty one (`nullAttributes()`, `nullFeatures()`, ...).
            case .object: return kind == .object || kind == .null
            case .string: return kind == .string
            case .array: return kind == .array || kind == .null
            case .any: return true
            }
        }

        /// As Ditto's `JsonValue.asObject()` and friends name the kind they expected.
        var dittoName: String {
            switch self {
            case .object: return "an object"
            case .string: return "a string"
            case .array: return "an array"
            case .any: return "a JSON value"
            }
        }

        var article: String {
            switch self {
            case .object: return "a JSON object"
            case .string: return "a JSON string"
            case .array: return "a JSON array"
            case .any: return "any JSON value"
            }
        }
    }

    /// Whether ``ThingModel`` has rules for what a value of this resource holds beyond its JSON kind.
    var hasModelRules: Bool {
        switch self {
        case .thing, .features, .feature, .featureDefinition, .definition, .policyID: return true
        default: return false
        }
    }

    /// Whether Ditto has a `<resource><Action>` thing event (`ThingEventMappingStrategies`).
    func supportsEvent(_ action: TopicPath.Action) -> Bool {
        switch action {
        case .merged:
            return true  // ThingMerged covers every path
        case .migrated:
            return self == .thing  // ThingDefinitionMigrated
        case .created, .modified, .deleted:
            switch self {
            case .policyID:
                return action == .modified
            case .policy, .policyEntries, .policyEntry, .policyEntrySubjects, .policyEntrySubject,
                .policyEntryResources, .policyEntryResource:
                return false  // the inline `_policy` has commands but no thing events
            default:
                return true
            }
        default:
            return false
        }
    }
}
