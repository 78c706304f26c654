public import BridgeConfig
public import DittoProtocol
public import MQTT
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
public import Foundation
#endif

/// Decides which header goes where between MQTT (5 properties and user properties, or a 3.1.1 JSON wrapper)
/// and Ditto headers, in both directions. Every uplink and downlink path goes through it.
///
/// Rules (docs/CONFIG.md's "Headers: the default mapping" documents them for users):
/// - MQTT 5 correlation data <-> `correlation-id` (see ``CorrelationID`` for non-UTF-8 data);
///   content type <-> `content-type`; message expiry (or a `timeout` user property) -> `timeout` for requests,
///   `timeout` -> message expiry.
/// - Each user property <-> a header of the same name, through the policy's allow, deny and rename lists.
/// - Reserved headers (``ReservedHeaders/isReserved(_:)``: Ditto's internal ones and the ones the bridge owns,
///   ``ReservedHeaders/managedNames``) never cross; `x-ditto-*` headers only when the policy's `allow` names them
///   exactly (``HeaderPolicy/isDittoExtension(lowercased:)``).
/// - One value per name, names compared case-insensitively: a later user property replaces an earlier one
///   of the same name, static headers replace what the device sent, and MQTT properties (correlation data,
///   content type) replace user properties of the same name.
/// - Static header values may name other headers (`{header:x-trace}`); a static header whose named header is
///   absent is left out, as Ditto's own header mapping does.
public struct HeaderMapper: Sendable {
    public var policy: HeaderPolicy

    public init(policy: HeaderPolicy) {
        self.policy = policy
    }

    /// Ditto headers for something a device published.
    ///
    /// - Parameters:
    ///   - properties: the MQTT 5 properties (empty for MQTT 3.1.1).
    ///   - carriedHeaders: name/value pairs that travelled another way (a 3.1.1 JSON wrapper's `headers`,
    ///     a correlation id from a topic level), treated like user properties and applied after them.
    ///   - variables: values for the static headers' placeholders.
    ///   - request: whether Ditto is asked to answer; only then does message expiry become `timeout`.
    ///   - generateCorrelationID: called when neither the properties nor carried headers give one.
    public func dittoHeaders(
        properties: PublishProperties,
        carriedHeaders: [(name: String, value: String)] = [],
        variables: [String: String] = [:],
        request: Bool = false,
        generateCorrelationID: () -> String
    ) throws(MappingError) -> DittoHeaders {
        var headers = DittoHeaders()
        // The bridge owns `timeout` (never forwarded), but acts on a request's: how long the device will wait.
        var askedTimeout: String?
        for property in properties.userProperties {
            if request, DittoHeaders.lowercase(property.name) == ReservedHeaders.timeout {
                askedTimeout = property.value
            } else {
                admit(property.name, property.value, into: &headers)
            }
        }
        for (name, value) in carriedHeaders {
            let lower = name.lowercased()
            if lower == ReservedHeaders.correlationID {
                headers[ReservedHeaders.correlationID] = value
            } else if request, lower == ReservedHeaders.timeout {
                askedTimeout = value
            } else {
                admit(name, value, into: &headers)
            }
        }
        if let data = properties.correlationData, !data.isEmpty {
            headers[ReservedHeaders.correlationID] = CorrelationID.fromCorrelationData(data)
        }
        if let contentType = properties.contentType, !contentType.isEmpty {
            headers[ReservedHeaders.contentType] = contentType
        }
        if let askedTimeout {
            headers[ReservedHeaders.timeout] = askedTimeout
        } else if request, let expiry = properties.messageExpiryInterval, expiry > 0 {
            headers[ReservedHeaders.timeout] = "\(min(expiry, 60))s"
        }
        return try completed(headers, variables: variables, generateCorrelationID: generateCorrelationID)
    }

    /// Whether ``dittoHeaders(properties:carriedHeaders:variables:request:generateCorrelationID:)`` takes
    /// nothing from `properties` for a message that is not a request: no user property, correlation data or
    /// content type.
    public static func takesNoHeaders(fromEvent properties: PublishProperties) -> Bool {
        properties.userProperties.isEmpty && (properties.correlationData?.isEmpty ?? true)
            && (properties.contentType?.isEmpty ?? true)
    }

    /// Whether a static header's value names another header (`{header:...}`).
    static func namesHeaders(_ header: StaticHeader) -> Bool {
        header.value.placeholderParts.contains { $0.name.hasPrefix(headerPlaceholderPrefix) }
    }

    /// Ditto headers of a pass-through envelope: the headers the device wrote into the envelope, through this
    /// policy only (reserved, denied and not allowed headers dropped, renames applied, JSON values and order kept),
    /// then the static headers. The envelope's own `correlation-id` and `content-type` stay as they are. The MQTT
    /// publish changes nothing in how Ditto reads the envelope: its content type describes the envelope JSON, not
    /// the value, and is ignored; only when the envelope has no `correlation-id` does the MQTT 5 correlation data
    /// give one (as Ditto's own header mapping would), else one is generated.
    public func passthroughHeaders(
        _ sent: DittoHeaders,
        properties: PublishProperties,
        variables: [String: String] = [:],
        generateCorrelationID: () -> String
    ) throws(MappingError) -> DittoHeaders {
        var headers = sent
        let kept = ReservedHeaders.envelopeOwnNames
        headers.removeAll { lower, _ in
            guard !kept.contains(lower) else { return false }
            if Self.traceContext.contains(lower), !policy.traceContext { return true }
            return ReservedHeaders.isReserved(lower) || !policy.allows(lower)
        }
        for name in headers.names where !kept.contains(name.lowercased()) {
            let target = policy.renamed(name)
            if target == name { continue }
            if !mayProduce(target, lowercased: nil) {
                headers.removeValue(forName: name)
            } else {
                headers.rename(name, to: target)
            }
        }
        if (headers[ReservedHeaders.correlationID] ?? "").isEmpty, let data = properties.correlationData, !data.isEmpty {
            headers[ReservedHeaders.correlationID] = CorrelationID.fromCorrelationData(data)
        }
        return try completed(headers, variables: variables, generateCorrelationID: generateCorrelationID)
    }

    /// A generated correlation id where there is none, then the static headers (last, so that `{header:...}`
    /// sees everything, correlation id included), then Ditto's checks.
    private func completed(
        _ headers: DittoHeaders, variables: [String: String], generateCorrelationID: () -> String
    ) throws(MappingError) -> DittoHeaders {
        var headers = headers
        if (headers[ReservedHeaders.correlationID] ?? "").isEmpty {
            headers[ReservedHeaders.correlationID] = generateCorrelationID()
        }
        try addStaticHeaders(to: &headers, variables: variables)
        try Self.requireAcceptable(headers)
        return headers
    }

    private func addStaticHeaders(to headers: inout DittoHeaders, variables: [String: String]) throws(MappingError) {
        for header in policy.staticHeaders {
            var values = variables
            for part in header.value.placeholderParts where part.name.hasPrefix(Self.headerPlaceholderPrefix) {
                let name = String(part.name.dropFirst(Self.headerPlaceholderPrefix.count))
                if let value = headers[name] { values[part.name] = value }
            }
            do {
                headers[header.name] = try header.value.render(values)
            } catch {
                // Like Ditto's header mapping: a header placeholder that does not resolve skips that header.
                if case .missingValue(let name) = error.kind, name.hasPrefix(Self.headerPlaceholderPrefix) { continue }
                throw MappingError(.template, "cannot render static header \(header.name): \(error)")
            }
        }
    }

    /// Headers Ditto would refuse (invalid values of its own headers, over 5 kB) are an `invalid-protocol` error
    /// carrying Ditto's answer (`header.invalid`, 431 `headers.too.large`).
    static func requireAcceptable(_ headers: DittoHeaders) throws(MappingError) {
        do {
            try headers.validate()
            try headers.checkSize()
        } catch {
            throw MappingError(protocolError: error)
        }
    }

    /// MQTT 5 properties for something the bridge publishes to a device on Ditto's behalf.
    ///
    /// - Parameters:
    ///   - headers: the Ditto headers of the command, message or answer.
    ///   - messageExpiry: seconds left before the requester gives up, if any.
    ///   - responseTopic: where the bridge expects the device's answer, if it expects one.
    public func deviceProperties(
        headers: DittoHeaders,
        messageExpiry: UInt32? = nil,
        responseTopic: String? = nil
    ) -> PublishProperties {
        var properties = PublishProperties()
        if let id = headers.correlationID, !id.isEmpty {
            properties.correlationData = CorrelationID.correlationData(for: id)
        }
        properties.contentType = headers.contentType
        properties.messageExpiryInterval = messageExpiry
        properties.responseTopic = responseTopic
        properties.userProperties = customHeaders(headers).map { UserProperty(name: $0.name, value: $0.value) }
        return properties
    }

    /// The headers that cross to a device as custom headers (MQTT 5 user properties or a 3.1.1 wrapper's
    /// `headers`), renamed, in the order Ditto sent them. Ditto's own vocabulary (`correlation-id`,
    /// `response-required`, `requested-acks`, ...) is not included: it travels as MQTT properties or the
    /// bridge acts on it.
    public func customHeaders(_ headers: DittoHeaders) -> [(name: String, value: String)] {
        var result: [(name: String, value: String)] = []
        headers.forEachHeader { name, lower, value, isKnown in
            let isTrace = Self.traceContext.contains(lower)
            if !isTrace, isKnown || ReservedHeaders.isReserved(lowercased: lower) { return }
            if isTrace, !policy.traceContext { return }
            guard policy.allows(lowercased: lower) else { return }
            let target = policy.renamed(name, lowercased: lower)
            guard mayProduce(target, lowercased: policy.rename.isEmpty ? lower : nil) else { return }
            result.append((target, value))
        }
        return result
    }

    private func admit(_ name: String, _ value: String, into headers: inout DittoHeaders) {
        let lower = DittoHeaders.lowercase(name)
        guard !name.isEmpty, !ReservedHeaders.isReserved(lowercased: lower) else { return }
        if Self.traceContext.contains(lower), !policy.traceContext { return }
        guard policy.allows(lowercased: lower) else { return }
        let target = policy.renamed(name, lowercased: lower)
        guard mayProduce(target, lowercased: policy.rename.isEmpty ? lower : nil) else { return }
        headers[target] = value
    }

    /// Whether a passing header may arrive under the name `target` (after its rename): not a reserved name, and
    /// an `x-ditto-*` name only when the policy names it exactly (``HeaderPolicy/mayProduce(lowercased:)``).
    /// - Parameter lowercased: `target` in lower case when at hand (no rename: the source name's).
    private func mayProduce(_ target: String, lowercased: String?) -> Bool {
        let lower = lowercased ?? DittoHeaders.lowercase(target)
        return !ReservedHeaders.isReserved(lowercased: lower) && policy.mayProduce(lowercased: lower)
    }

    static let headerPlaceholderPrefix = "header:"
    static let traceContext = HeaderPolicy.traceContextNames
}
