extension Envelope {
    /// The encoding of a live event in which only the thing, the `correlation-id`, the value, the revision and
    /// the timestamp change from one message to the next: what an event rule produces for every message that
    /// brings no headers of its own.
    ///
    /// It is ``Envelope/encoded()`` of a probe event that carries sentinels where those parts go, cut at the
    /// sentinels. Encoding a message with it gives, byte for byte, what `encoded()` gives for the probe with the
    /// parts set, without building headers, an envelope and its teardown per message. The format stays in
    /// `encoded()`: this only remembers its output. The thing is a part like the others where the probe's thing
    /// is ``thingSentinel``, so that one template serves every device topic of a rule whose path and headers do
    /// not depend on the topic: a gateway with a topic per point keeps one template per rule, not one per topic.
    /// A probe of another thing makes a template of that thing alone.
    public struct EventTemplate: Sendable {
        /// Where the probe's correlation id goes. As long as the longest id ``accepts(correlationID:)``
        /// takes, so that headers that fit Ditto's size limit with it fit with every accepted id.
        public static let correlationIDSentinel = {
            let mark = "@@ditto-mqtt-bridge:template:correlation-id@@"
            return mark + String(repeating: "0", count: maximumCorrelationIDLength - mark.utf8.count)
        }()
        /// The probe's value.
        public static let valueSentinel = JSONValue.string("@@ditto-mqtt-bridge:template:value@@")
        /// The probe's revision: nineteen digits no config writes by chance.
        public static let revisionSentinel: Int64 = 7_306_179_342_818_529_065
        /// The probe's timestamp.
        public static let timestampSentinel = "@@ditto-mqtt-bridge:template:timestamp@@"
        /// The longest correlation id the template encodes (the bridge generates 36 characters).
        public static let maximumCorrelationIDLength = 128
        /// The probe's thing: a valid thing ID whose namespace and name no config or device writes by chance
        /// (neither needs a JSON escape, so each appears in the encoding as written).
        public static let thingSentinel: ThingID = {
            do {
                return try ThingID(namespace: "dittomqttbridgetemplatenamespace",
                                   name: "@@ditto-mqtt-bridge:template:thing-name@@")
            } catch {
                preconditionFailure("the template's thing sentinel is a valid thing ID: \(error)")
            }
        }()

        enum Slot: Sendable {
            case correlationID, value, revision, timestamp, thingNamespace, thingName
        }

        /// The encoding without the sentinels; `slots[i]` goes in at `cuts[i]`. One buffer.
        private let text: [UInt8]
        private let cuts: [Int]
        private let slots: [Slot]
        /// The probe's `content-type` and `reply-to` headers (for what else the publish carries).
        public let contentType: String?
        public let replyTo: String?

        /// The template of `probe`: a live event whose correlation id, value, revision and timestamp are the
        /// sentinels, and its thing too where it is to be a part. Nil when a sentinel does not appear exactly
        /// once in its encoding, as when another header repeats the correlation id or names the thing.
        public init?(probe: Envelope) {
            guard probe.headers.correlationID == Self.correlationIDSentinel, probe.value == Self.valueSentinel,
                  probe.revision == Self.revisionSentinel, probe.timestamp == Self.timestampSentinel
            else { return nil }
            let encoded = probe.encoded()
            var sentinels = [(Slot.correlationID, JSON.serializeString(Self.correlationIDSentinel)),
                             (.value, JSON.serialize(Self.valueSentinel)),
                             (.revision, Array(String(Self.revisionSentinel).utf8)),
                             (.timestamp, JSON.serializeString(Self.timestampSentinel))]
            if probe.topic.thingID == Self.thingSentinel {
                sentinels += [(.thingNamespace, Array(Self.thingSentinel.namespace.utf8)),
                              (.thingName, Array(Self.thingSentinel.name.utf8))]
            }
            var found: [(range: Range<Int>, slot: Slot)] = []
            for (slot, text) in sentinels {
                let ranges = Self.occurrences(of: text, in: encoded)
                guard ranges.count == 1 else { return nil }
                found.append((ranges[0], slot))
            }
            found.sort { $0.range.lowerBound < $1.range.lowerBound }
            var text: [UInt8] = []
            var cuts: [Int] = []
            var start = 0
            for (range, _) in found {
                guard range.lowerBound >= start else { return nil }
                text += encoded[start..<range.lowerBound]
                cuts.append(text.count)
                start = range.upperBound
            }
            text += encoded[start...]
            self.text = text
            self.cuts = cuts
            self.slots = found.map(\.slot)
            contentType = probe.headers.contentType
            replyTo = probe.headers.replyTo
        }

        /// Whether an event with this correlation id is the probe's with the id replaced: an id Ditto accepts
        /// (not empty) that keeps the headers within the size the probe was checked at.
        public static func accepts(correlationID: String) -> Bool {
            !correlationID.isEmpty && correlationID.utf8.count <= maximumCorrelationIDLength
        }

        /// `encoded()` of the probe with these parts in place of the sentinels (`thingID` only where the probe's
        /// thing was ``thingSentinel``: a template of one thing writes that one). `compactText`, where given, is
        /// what ``Envelope/setValue(_:compactText:)`` takes; it is written instead of `value`, which is then not read
        /// (the uplink passes `.null` for a payload it did not parse, see ``JSON/compactValue(_:)``).
        public func encode(thingID: ThingID, correlationID: String, value: JSONValue, compactText: ArraySlice<UInt8>?,
                           revision: Int64, timestamp: String) -> [UInt8] {
            var w = JSONWriter(capacity: text.count + thingID.namespace.utf8.count + thingID.name.utf8.count
                               + correlationID.utf8.count + (compactText?.count ?? 128) + 64)
            text.withUnsafeBufferPointer { text in
                var start = 0
                for (cut, slot) in zip(cuts, slots) {
                    w.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: text[start..<cut]))
                    start = cut
                    switch slot {
                    case .correlationID: w.writeString(correlationID)
                    case .value: w.write(value, compactText: compactText)
                    case .revision: w.writeInteger(revision)
                    case .timestamp: w.writeString(timestamp)
                    // As ``TopicPath`` writes them into the topic, the one place the probe has them.
                    case .thingNamespace: w.writeStringContents(thingID.namespace)
                    case .thingName: w.writeStringContents(thingID.name)
                    }
                }
                w.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: text[start...]))
            }
            return w.bytes
        }

        private static func occurrences(of needle: [UInt8], in haystack: [UInt8]) -> [Range<Int>] {
            guard !needle.isEmpty, haystack.count >= needle.count else { return [] }
            var ranges: [Range<Int>] = []
            var index = 0
            while index <= haystack.count - needle.count {
                if haystack[index] == needle[0], haystack[index..<index + needle.count].elementsEqual(needle) {
                    ranges.append(index..<index + needle.count)
                    index += needle.count
                } else {
                    index += 1
                }
            }
            return ranges
        }
    }
}
