import DittoProtocol

/// The JSON wrapper MQTT 3.1.1 devices use to carry headers: `{"headers": {...}, "value": ...}`.
enum HeaderWrapper {
    /// Wraps a value with string headers, in the headers' order.
    static func wrap(headers: some Sequence<(name: String, value: String)>, value: JSONValue) -> [UInt8] {
        var object = JSONObject()
        for (name, text) in headers { object[name] = .string(text) }
        return JSON.serialize(.object(["headers": .object(object), "value": value]))
    }

    /// The wrapped value's JSON bytes (nil when there is no `value`) and the headers, non-strings as JSON text,
    /// nulls left out.
    static func unwrap(_ payload: [UInt8]) throws(MappingError) -> (value: [UInt8]?, headers: [(name: String, value: String)]) {
        // The value is read again by the rule's payload format, which refuses numbers Ditto cannot read in what
        // reaches Ditto; the headers travel as strings.
        let document: JSONValue
        do {
            document = try JSON.parseAnyNumbers(payload)
        } catch {
            throw PayloadReader.invalidJSON(error)
        }
        guard case .object(let wrapper) = document else {
            throw MappingError(.invalidPayload, "expected a JSON object {\"headers\": {...}, \"value\": ...}")
        }
        var carried: [(name: String, value: String)] = []
        if let headers = wrapper["headers"] {
            guard case .object(let object) = headers else {
                throw MappingError(.invalidPayload, "\"headers\" of the wrapper must be a JSON object")
            }
            for (name, value) in object {
                switch value {
                case .null: continue
                case .string(let text): carried.append((name, text))
                default: carried.append((name, JSON.serializeToString(value)))
                }
            }
        }
        return (wrapper["value"].map { JSON.serialize($0) }, carried)
    }
}
