import Testing

@testable import DittoProtocol

@Suite struct HeadersTests {
    /// Byte equality, compared eight bytes at a time: every length up to 40 (small and heap strings), a difference
    /// at every position, non-ASCII bytes.
    @Test func utf8EqualsComparesEveryByte() {
        for length in 0...40 {
            let base = (0..<length).map { UInt8(ascii: "a") + UInt8($0 % 26) }
            let text = String(decoding: base, as: UTF8.self)
            #expect(text.utf8Equals(String(decoding: base, as: UTF8.self)))
            for index in base.indices {
                var changed = base
                changed[index] = UInt8(ascii: "A")
                #expect(!text.utf8Equals(String(decoding: changed, as: UTF8.self)), "\(length) \(index)")
            }
            #expect(!text.utf8Equals(text + "a"))
        }
        #expect("é".utf8Equals("é") && !"é".utf8Equals("e\u{301}"))
    }

    /// The lookup by length finds exactly the known names: each of them, and none of their one-byte changes.
    @Test func knownHeadersAreFoundByTheirBytes() {
        for (name, definition) in HeaderDefinition.known {
            #expect(HeaderDefinition.known(name)?.type == definition.type, "\(name)")
            var bytes = Array(name.utf8)
            for index in bytes.indices {
                let original = bytes[index]
                bytes[index] = original == UInt8(ascii: "x") ? UInt8(ascii: "y") : UInt8(ascii: "x")
                let changed = String(decoding: bytes, as: UTF8.self)
                #expect((HeaderDefinition.known(changed) != nil) == (HeaderDefinition.known[changed] != nil), "\(changed)")
                bytes[index] = original
            }
            #expect(HeaderDefinition.known(name + "x") == nil && HeaderDefinition.known(String(name.dropLast())) == nil)
        }
        #expect(HeaderDefinition.known("") == nil)
        #expect(HeaderDefinition.known(String(repeating: "a", count: 300)) == nil)
        #expect(DittoHeaders.lowercase("Correlation-ID") == "correlation-id")
        #expect(DittoHeaders.lowercase("Ünïcode-X") == "ünïcode-x")
        #expect(DittoHeaders.lowercase("already-lower@[]`{") == "already-lower@[]`{")
    }

    @Test func caseInsensitiveLookupCasePreservingOutput() {
        var headers = DittoHeaders()
        headers["Correlation-ID"] = "abc"
        headers["X-Custom"] = "1"
        #expect(headers["correlation-id"] == "abc")
        #expect(headers.correlationID == "abc")
        #expect(headers.contains("CORRELATION-ID"))
        headers["correlation-id"] = "def"
        #expect(headers.count == 2)
        #expect(headers.names == ["correlation-id", "X-Custom"])
        #expect(headers.json.keys == ["correlation-id", "X-Custom"])
        headers["x-custom"] = nil
        #expect(headers.count == 1)
    }

    @Test func fromJSONStringifiesAndDropsNull() throws {
        let object = try #require(try JSON.parse(#"{"a":"s","n":1,"b":true,"arr":["x",1],"o":{"k":null},"z":null}"#).objectValue)
        let headers = DittoHeaders(json: object)
        #expect(headers["a"] == "s")
        #expect(headers["n"] == "1")
        #expect(headers["b"] == "true")
        #expect(headers["arr"] == #"["x",1]"#)
        #expect(headers["o"] == #"{"k":null}"#)
        #expect(headers["z"] == nil)
        #expect(headers.count == 5)
        // Custom non-string values go back out as they came in.
        #expect(headers.json == object.filteringNull())
    }

    @Test func typedAccessors() {
        var headers = DittoHeaders()
        headers.responseRequired = false
        #expect(headers["response-required"] == "false")
        #expect(headers.responseRequired == false)
        #expect(headers.isResponseRequired == false)
        headers["response-required"] = "yes"
        #expect(headers.responseRequired == nil)
        #expect(headers.isResponseRequired == true)

        headers["requested-acks"] = "a-ack, b-ack ,c-ack"
        #expect(headers.requestedAcks == ["a-ack", "b-ack", "c-ack"])
        headers["requested-acks"] = #"["live-response","x:y"]"#
        #expect(headers.requestedAcks == ["live-response", "x:y"])
        headers.requestedAcks = ["one", "two"]
        #expect(headers.json["requested-acks"] == ["one", "two"])

        headers["timeout"] = "250ms"
        #expect(headers.timeout?.milliseconds == 250)
        #expect(headers.timeout?.duration == .milliseconds(250))
        headers["timeout"] = "42"
        #expect(headers.timeout?.milliseconds == 42_000)
        headers.contentType = "application/json"
        headers.replyTo = "reply/topic"
        headers.channel = "live"
        #expect(headers["Content-Type"] == "application/json")
        #expect(headers.replyTo == "reply/topic")
        #expect(headers.channel == "live")
        headers.responseRequired = true
        #expect(throws: Never.self) { try headers.validate() }
    }

    @Test func validationOfKnownHeaders() throws {
        let cases: [(String, String)] = [
            ("response-required", "yes"), ("dry-run", "TRUE"), ("timeout", "ten"), ("timeout", "-5s"),
            ("channel", "mqtt"), ("correlation-id", ""), ("requested-acks", "[1,2]"), ("requested-acks", "ab"),
            ("if-equal", "maybe"), ("at-historical-revision", "1.5"), ("live-channel-timeout-strategy", "x"),
        ]
        for (name, value) in cases {
            var headers = DittoHeaders()
            headers[name] = value
            let error = try #require(throws: DittoError.self, "\(name)=\(value)") { try headers.validate() }
            #expect(error.status == 400)
            #expect(["header.invalid", "acknowledgement:label.invalid"].contains(error.error))
        }
        var custom = DittoHeaders()
        custom["my-flag"] = "whatever"
        custom["response-required"] = "true"
        custom["requested-acks"] = #"["{{connection:id}}:delivered"]"#
        try custom.validate()
    }

    @Test func headerInvalidMessageText() throws {
        var headers = DittoHeaders()
        headers["Response-Required"] = "yes"
        let error = try #require(throws: DittoError.self) { try headers.validate() }
        #expect(error.message == "The value 'yes' of the header 'Response-Required' is not a valid boolean.")
    }

    @Test func sizeLimit() throws {
        var headers = DittoHeaders()
        headers["x"] = String(repeating: "v", count: DittoHeaders.sizeLimit - 1)
        #expect(headers.encodedSize == DittoHeaders.sizeLimit)
        try headers.checkSize()
        headers["y"] = ""
        let error = try #require(throws: DittoError.self) { try headers.checkSize() }
        #expect(error.status == 431)
        #expect(error.error == "headers.too.large")
    }

    @Test func internalAndExternalHeaders() {
        #expect(DittoHeaders.isDittoInternal("ditto-originator"))
        #expect(DittoHeaders.isDittoInternal("Ditto-Anything"))
        #expect(DittoHeaders.isDittoInternal("etag"))
        #expect(DittoHeaders.isDittoInternal("entity-revision"))
        #expect(!DittoHeaders.isDittoInternal("correlation-id"))
        #expect(!DittoHeaders.isDittoInternal("x-custom"))
        #expect(DittoHeaders.isReadOnlyFromExternal("ditto-message-subject"))
        #expect(!DittoHeaders.isReadOnlyFromExternal("timeout"))
        #expect(!DittoHeaders.isWrittenToExternal("authorization"))
        #expect(DittoHeaders.isWrittenToExternal("my-header"))

        var headers = DittoHeaders()
        headers["correlation-id"] = "c"
        headers["ditto-originator"] = "me"
        headers["authorization"] = "secret"
        headers["requested-acks"] = #"["live-response","conn:delivered"]"#
        let inbound = headers.filteredForInbound()
        #expect(inbound["ditto-originator"] == nil)
        #expect(inbound["authorization"] == "secret")
        let outbound = headers.filteredForOutbound()
        #expect(outbound["authorization"] == nil)
        #expect(outbound["ditto-originator"] == "me")
        #expect(outbound.requestedAcks == ["conn:delivered"])
    }

    @Test(arguments: [
        ("250ms", 250), ("42s", 42_000), ("1m", 60_000), ("42", 42_000), ("2h", 7_200_000), ("0", 0), ("+5s", 5_000),
        ("-0", 0), ("1d", 86_400_000),
    ] as [(String, Int64)])
    func durations(_ text: String, _ milliseconds: Int64) throws {
        let duration = try #require(DittoDuration(parsing: text))
        #expect(duration.milliseconds == milliseconds)
        #expect(duration.text == text)
    }

    @Test(arguments: ["", "ms", "1.5s", "-1s", "1 s", "10x", "s10", "99999999999999999999"])
    func invalidDurations(_ text: String) {
        #expect(DittoDuration(parsing: text) == nil)
    }

    /// The byte parser against the string-based one it replaced, on every text of up to four characters from an
    /// alphabet of digits, signs, unit letters and others, and on amounts around the overflow limits.
    @Test func durationParserAgreesWithTheStringParser() {
        let alphabet = Array("09+-msohdwyx. é")
        var texts = [""]
        var level = [""]
        for _ in 1...4 {
            level = level.flatMap { prefix in alphabet.map { prefix + String($0) } }
            texts += level
        }
        texts += ["9223372036854775807", "9223372036854775808", "-9223372036854775808", "+0009s",
                  "9223372036854775ms", "9223372036854776ms", "106751991167300d", "106751991167301d",
                  "-" + String(repeating: "0", count: 30) + "s", String(repeating: "0", count: 30) + "9mo"]
        for text in texts {
            let parsed = DittoDuration(parsing: text)
            let reference = Self.referenceDuration(text)
            #expect(parsed?.amount == reference?.amount && parsed?.unit == reference?.unit, "\(text)")
        }
    }

    /// The string-based parser as it was before the byte parser (kept as the reference).
    static func referenceDuration(_ text: String) -> (amount: Int64, unit: DittoDuration.Unit)? {
        let utf8 = Array(text.utf8)
        var suffixStart = utf8.count
        while suffixStart > 0 {
            let c = utf8[suffixStart - 1]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { break }
            suffixStart -= 1
        }
        guard let unit = DittoDuration.Unit(rawValue: String(decoding: utf8[suffixStart...], as: UTF8.self)) else { return nil }
        var digits = utf8[..<suffixStart]
        if digits.first == UInt8(ascii: "+") || digits.first == UInt8(ascii: "-") {
            let negative = digits.first == UInt8(ascii: "-")
            digits = digits.dropFirst()
            if negative && !digits.allSatisfy({ $0 == UInt8(ascii: "0") }) { return nil }
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let amount = Int64(String(decoding: digits, as: UTF8.self))
        else { return nil }
        guard amount.multipliedReportingOverflow(by: unit.milliseconds).overflow == false else { return nil }
        return (amount, unit)
    }
}

extension JSONObject {
    func filteringNull() -> JSONObject {
        JSONObject(self.filter { !$0.value.isNull }.map { ($0.key, $0.value) })
    }
}
