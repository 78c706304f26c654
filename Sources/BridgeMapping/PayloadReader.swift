public import BridgeConfig
public import DittoProtocol
import Foundation

/// Ditto's limit on message payloads (`ditto.limits.messages.max-size = 250k`).
public let maximumPayloadSize = 250 * 1024

/// Reads device payloads as a rule says.
public enum PayloadReader {
    /// The payload as a JSON value, for a live event's `value`.
    public static func jsonValue(_ payload: [UInt8], format: UplinkPayload) throws(MappingError) -> JSONValue {
        try checkSize(payload)
        switch format {
        case .json(.whole):
            return try parseJSON(payload)
        case .json(let selection):
            // Only the selected values reach Ditto, so only their numbers must be ones Ditto reads.
            let document: JSONValue
            do {
                document = try JSON.parseAnyNumbers(payload)
            } catch {
                throw invalidJSON(error)
            }
            let selected = try select(selection, from: document)
            if let number = selected.numberDittoCannotRead, let refusal = JSONNumber.rangeRefusal(literal: number.literal) {
                throw MappingError(.invalidPayload, refusal)
            }
            return selected
        case .number:
            let text = try utf8(payload).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let number = JSONNumber(literal: text) else {
                if let refusal = JSONNumber.rangeRefusal(literal: text) { throw MappingError(.invalidPayload, refusal) }
                throw MappingError(.invalidPayload, "expected a number, got \(quoted(text))")
            }
            return .number(number)
        case .boolean:
            let text = try utf8(payload).trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            switch text {
            case "true", "1", "on": return .bool(true)
            case "false", "0", "off": return .bool(false)
            default: throw MappingError(.invalidPayload, "expected true or false, got \(quoted(text))")
            }
        case .text:
            return .string(try utf8(payload))
        case .bytes:
            return .string(Base64.encode(payload))
        }
    }

    /// ``jsonValue(_:format:)`` plus, for a whole JSON payload already in compact form, the payload's bytes of
    /// the value (``Envelope/setValue(_:compactText:)``): the event then carries the device's bytes instead of
    /// writing the same bytes again from the parsed value.
    public static func jsonValueKeepingText(
        _ payload: [UInt8], format: UplinkPayload
    ) throws(MappingError) -> (value: JSONValue, compactText: ArraySlice<UInt8>?) {
        guard case .json(.whole) = format else { return (try jsonValue(payload, format: format), nil) }
        try checkSize(payload)
        do {
            let (value, compact) = try JSON.parseKeepingCompactText(payload)
            return (value, compact.map { payload[$0] })
        } catch {
            throw invalidJSON(error)
        }
    }

    /// For a rule that takes the whole payload as JSON, a payload already in compact form with ASCII strings: the
    /// kind of its value and its bytes, read without parsing it into a value (``JSON/compactValue(_:)``). Nil for
    /// everything else: ``jsonValueKeepingText(_:format:)`` then parses it, or says what is wrong with it.
    public static func compactJSON(_ payload: [UInt8], format: UplinkPayload) -> (kind: JSON.Kind, text: ArraySlice<UInt8>)? {
        guard case .json(.whole) = format, (try? checkSize(payload)) != nil,
              let (kind, range) = JSON.compactValue(payload) else { return nil }
        return (kind, payload[range])
    }

    /// The payload of a live message and the content type that goes with it (Ditto encodes the `value`
    /// by content type: JSON types as JSON, text types as a string, everything else as base64).
    public static func messagePayload(
        _ payload: [UInt8],
        format: UplinkPayload,
        contentType classified: ContentType?
    ) throws(MappingError) -> (payload: MessagePayload, contentType: String) {
        // A content type of another kind than the format (a device saying text/plain for a JSON rule) would make
        // Ditto read the value differently, so it yields to the format's default.
        let strategy = classified?.strategy ?? .binary
        let contentType = classified?.value
        switch format {
        case .json, .number, .boolean:
            let kept = strategy == .json ? contentType : nil
            return (.json(try jsonValue(payload, format: format)), kept ?? "application/json")
        case .text:
            try checkSize(payload)
            let kept = strategy == .text ? contentType : nil
            return (.text(try utf8(payload)), kept ?? MessagePayload.textContentType)
        case .bytes:
            try checkSize(payload)
            let kept = strategy == .binary || strategy == .jsonMergePatch ? contentType : nil
            return (.binary(payload), kept ?? "application/octet-stream")
        }
    }

    static func checkSize(_ payload: [UInt8]) throws(MappingError) {
        guard payload.count <= maximumPayloadSize else {
            throw MappingError(.payloadTooLarge, "payload of \(payload.count) bytes exceeds Ditto's limit of \(maximumPayloadSize) bytes")
        }
    }

    static func parseJSON(_ payload: [UInt8]) throws(MappingError) -> JSONValue {
        do {
            return try JSON.parse(payload)
        } catch {
            throw invalidJSON(error)
        }
    }

    static func invalidJSON(_ error: JSONParseError) -> MappingError {
        MappingError(.invalidPayload, "invalid JSON: \(error)")
    }

    static func utf8(_ payload: [UInt8]) throws(MappingError) -> String {
        guard let text = String(validating: payload, as: UTF8.self) else {
            throw MappingError(.invalidPayload, "payload is not valid UTF-8 text")
        }
        return text
    }

    static func select(_ selection: UplinkPayload.JSONSelection, from document: JSONValue) throws(MappingError) -> JSONValue {
        switch selection {
        case .whole:
            return document
        case .pointer(let pointer):
            return try evaluate(pointer, in: document, field: nil)
        case .fields(let fields):
            var object = JSONObject()
            for field in fields {
                object[field.name] = try evaluate(field.pointer, in: document, field: field.name)
            }
            return .object(object)
        }
    }

    static func evaluate(_ pointer: RFC6901Pointer, in document: JSONValue, field: String?) throws(MappingError) -> JSONValue {
        guard let value = pointer.evaluate(in: document) else {
            let what = field.map { " (field \($0))" } ?? ""
            throw MappingError(.invalidPayload, "JSON pointer \(pointer)\(what) matches nothing in the payload")
        }
        return value
    }

    private static func quoted(_ text: String) -> String {
        let short = text.count > 40 ? String(text.prefix(40)) + "..." : text
        return "\"\(short)\""
    }
}
