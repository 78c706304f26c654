import BridgeConfig
import DittoProtocol
import MQTT
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// Decides which header goes where between MQTT (5 properties and user properties, or a 3.1.1 JSON wrapper)
/// and Ditto headers, in both directions. Every uplink and downlink path goes through it.
///
/// Rules (the README's table documents them for users):
/// - MQTT 5 correlation data <-> `correlation-id` (see ``CorrelationID`` for non-UTF-8 data);
///   content type <-> `content-type`; message expiry (or a `timeout` user property) -> `timeout` for requests,
///   `timeout` -> message expiry.
/// - Each user property <-> a header of the same name, through the policy's allow, deny and rename lists.
/// - Reserved headers (``HeaderMapper/isReserved(_:)``: Ditto's internal ones and the ones the bridge owns,
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
            if request, DittoHeaders.lowercase(property.name) == Self.timeout {
                askedTimeout = property.value
            } else {
                admit(property.name, property.value, into: &headers)
            }
        }
        for (name, value) in carriedHeaders {
            let lower = name.lowercased()
            if lower == Self.correlationID {
                headers[Self.correlationID] = value
            } else if request, lower == Self.timeout {
                askedTimeout = value
            } else {
                admit(name, value, into: &headers)
            }
        }
        if let data = properties.correlationData, !data.isEmpty {
            headers[Self.correlationID] = CorrelationID.fromCorrelationData(data)
        }
        if let contentType = properties.contentType, !contentType.isEmpty {
            headers[Self.contentType] = contentType
        }
        if let askedTimeout {
            headers[Self.timeout] = askedTimeout
        } else if request, let expiry = properties.messageExpiryInterval, expiry > 0 {
            headers[Self.timeout] = "\(min(expiry, 60))s"
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
            return Self.isReserved(lower) || !policy.allows(lower)
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
        if (headers[Self.correlationID] ?? "").isEmpty, let data = properties.correlationData, !data.isEmpty {
            headers[Self.correlationID] = CorrelationID.fromCorrelationData(data)
        }
        return try completed(headers, variables: variables, generateCorrelationID: generateCorrelationID)
    }

    /// A generated correlation id where there is none, then the static headers (last, so that `{header:...}`
    /// sees everything, correlation id included), then Ditto's checks.
    private func completed(
        _ headers: DittoHeaders, variables: [String: String], generateCorrelationID: () -> String
    ) throws(MappingError) -> DittoHeaders {
        var headers = headers
        if (headers[Self.correlationID] ?? "").isEmpty {
            headers[Self.correlationID] = generateCorrelationID()
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
            if !isTrace, isKnown || Self.isReserved(lowercased: lower) { return }
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
        guard !name.isEmpty, !Self.isReserved(lowercased: lower) else { return }
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
        return !Self.isReserved(lowercased: lower) && policy.mayProduce(lowercased: lower)
    }

    static let headerPlaceholderPrefix = "header:"
    static let correlationID = "correlation-id"
    static let contentType = "content-type"
    static let timeout = "timeout"
    static let traceContext: Set<String> = ["traceparent", "tracestate"]
    /// Never crosses as a custom header in either direction: Ditto's internal and read-only headers (every
    /// `ditto-*`, `channel`, `raw-request-url`, `read-subjects`, `subject`, `timeout-access`, `authorization`, ...),
    /// the headers Ditto drops from outside (FACTS.md §e, R = false), and the ones the bridge owns
    /// (``ReservedHeaders/managedNames``: it sets them itself or acts on them).
    public static func isReserved(_ name: String) -> Bool {
        isReserved(lowercased: DittoHeaders.lowercase(name))
    }

    static func isReserved(lowercased lower: String) -> Bool {
        DittoHeaders.isInternal(lower) || ReservedHeaders.managedNames.contains(lower)
    }
}

/// How MQTT 5 correlation data (bytes) and Ditto's `correlation-id` (a string) map onto each other.
///
/// Correlation data that is valid UTF-8 without control characters becomes the correlation id unchanged.
/// Anything else becomes `base64:` followed by the standard base64 of the bytes, and turns back into the
/// same bytes on the way to the device, so a binary correlation id survives a full round trip.
public enum CorrelationID {
    public static let base64Prefix = "base64:"

    public static func fromCorrelationData(_ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self),
            !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }),
            !text.hasPrefix(base64Prefix)
        {
            return text
        }
        return base64Prefix + Base64.encode(bytes)
    }

    public static func correlationData(for id: String) -> [UInt8] {
        if id.hasPrefix(base64Prefix), let bytes = Base64.decode(String(id.dropFirst(base64Prefix.count))) {
            return bytes
        }
        return Array(id.utf8)
    }

    /// A fresh id for messages that came without one: a random per-process UUID with a counter in its last
    /// group. Unique like a UUID per message, without a random-number syscall per message.
    public static func generate() -> String {
        let count = generated.add(1, ordering: .relaxed).newValue
        // Written into one buffer: this runs for every device message that brings no correlation id.
        return String(unsafeUninitializedCapacity: 36) { buffer in
            for (index, byte) in processPrefix.enumerated() { buffer[index] = byte }
            var rest = count
            for index in stride(from: 35, through: 24, by: -1) {
                buffer[index] = hexDigits[Int(rest & 0xF)]
                rest >>= 4
            }
            return 36
        }
    }

    /// The first four groups of a random UUID (`xxxxxxxx-xxxx-4xxx-yxxx-`), 24 bytes.
    private static let processPrefix = Array(UUID().uuidString.lowercased().utf8.dropLast(12))
    private static let hexDigits = Array("0123456789abcdef".utf8)
    private static let generated = Atomic<UInt64>(UInt64.random(in: 0..<(1 << 40)))
}
