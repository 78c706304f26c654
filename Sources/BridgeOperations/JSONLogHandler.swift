#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The metadata keys the bridge uses for the things an operator filters by; with `--log-format json` each
/// becomes a field of the log line.
public enum LogMetadataKey {
    /// The MQTT topic of the message (device side or Ditto side).
    public static let topic = "mqtt.topic"
    /// The uplink or downlink rule's `name`.
    public static let rule = "rule"
    /// The Ditto thing ID.
    public static let thingID = "thing-id"
    /// The Ditto `correlation-id`.
    public static let correlationID = "correlation-id"
}

/// A swift-log handler writing one JSON object per line (JSON Lines), for log collectors:
///
/// `{"timestamp":"2026-11-28T17:30:31.123Z","level":"warning","label":"ditto-mqtt-bridge","message":"...","mqtt.topic":"devices/x","rule":"telemetry"}`
///
/// `timestamp` (UTC, milliseconds), `level`, `label` and `message` come first; then every metadata key
/// (handler, provider and per-call, the later winning) as a field of its own, sorted by name. A metadata key
/// equal to one of the four fixed names is written as `metadata.<key>`. Strings stay strings, metadata
/// dictionaries and arrays become JSON objects and arrays, anything else its description.
public struct JSONLogHandler: LogHandler {
    /// Where complete lines (with the final newline) go.
    public typealias Sink = @Sendable (String) -> Void

    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: Sink

    /// A handler writing to `sink` (standard error by default, in one `write(2)` per line).
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, sink: @escaping Sink = JSONLogHandler.standardError) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        if let error = event.error, merged["error"] == nil { merged["error"] = "\(error)" }
        sink(Self.line(timestamp: Date(), level: event.level, label: label, message: "\(event.message)", metadata: merged))
    }

    static let fixedFields: Set<String> = ["timestamp", "level", "label", "message"]

    /// One JSON line for an event, ending in `\n`.
    public static func line(
        timestamp: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata
    ) -> String {
        var out = "{\"timestamp\":"
        appendString(timestampText(timestamp), to: &out)
        out += ",\"level\":"
        appendString(level.rawValue, to: &out)
        out += ",\"label\":"
        appendString(label, to: &out)
        out += ",\"message\":"
        appendString(message, to: &out)
        for key in metadata.keys.sorted() {
            guard let value = metadata[key] else { continue }
            out += ","
            appendString(fixedFields.contains(key) ? "metadata.\(key)" : key, to: &out)
            out += ":"
            appendValue(value, to: &out)
        }
        out += "}\n"
        return out
    }

    /// ISO 8601 in UTC with milliseconds, the form log collectors parse without configuration.
    static func timestampText(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(milliseconds % 1000), 3))Z"
    }

    private static func appendValue(_ value: Logger.Metadata.Value, to out: inout String) {
        switch value {
        case .string(let text):
            appendString(text, to: &out)
        case .stringConvertible(let convertible):
            appendString(convertible.description, to: &out)
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                appendValue(item, to: &out)
            }
            out += "]"
        case .dictionary(let dictionary):
            out += "{"
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                appendString(key, to: &out)
                out += ":"
                if let item = dictionary[key] { appendValue(item, to: &out) }
            }
            out += "}"
        }
    }

    /// RFC 8259 string escaping: quote, backslash and control characters; everything else as UTF-8.
    private static func appendString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Writes each line to file descriptor 2 in one call (so lines from concurrent tasks never interleave).
    public static let standardError: Sink = { line in
        let bytes = Array(line.utf8)
        writeLock.withLock { _ in
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let written = write(2, raw.baseAddress.map { $0 + offset }, raw.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }

    private static let writeLock = Mutex(())
}
