/// A duration as Ditto writes it in headers such as `timeout`: `<n>ms`, `<n>s`, `<n>m`, `<n>h`, `<n>d`,
/// `<n>w`, `<n>mo`, `<n>y`, or a plain number of seconds (`DittoDuration.java`). Amounts are non-negative
/// integers (an optional `+` sign is accepted, as Java's `Long.parseLong` does).
public struct DittoDuration: Sendable, Hashable, CustomStringConvertible {
    /// The unit suffix.
    public enum Unit: String, Sendable, Hashable, CaseIterable {
        case milliseconds = "ms"
        case seconds = "s"
        case minutes = "m"
        case hours = "h"
        case days = "d"
        case weeks = "w"
        case months = "mo"
        case years = "y"
        /// A plain number: seconds.
        case implicitSeconds = ""

        var milliseconds: Int64 {
            switch self {
            case .milliseconds: return 1
            case .seconds, .implicitSeconds: return 1_000
            case .minutes: return 60_000
            case .hours: return 3_600_000
            case .days: return 86_400_000
            case .weeks: return 7 * 86_400_000
            case .months: return 30 * 86_400_000
            case .years: return 365 * 86_400_000
            }
        }
    }

    /// The amount in `unit`.
    public let amount: Int64
    /// The unit it was written in.
    public let unit: Unit
    /// The text it was parsed from (or `amount` + suffix when built).
    public let text: String

    /// Parses a Ditto duration; `nil` if it is not one (or negative, or out of range).
    public init?(parsing text: String) {
        let utf8 = Array(text.utf8)
        var suffixStart = utf8.count
        while suffixStart > 0 {
            let c = utf8[suffixStart - 1]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { break }
            suffixStart -= 1
        }
        guard let unit = Unit(rawValue: String(decoding: utf8[suffixStart...], as: UTF8.self)) else { return nil }
        var digits = utf8[..<suffixStart]
        if digits.first == UInt8(ascii: "+") || digits.first == UInt8(ascii: "-") {
            let negative = digits.first == UInt8(ascii: "-")
            digits = digits.dropFirst()
            // "-0" is zero and allowed; any other negative amount is refused like Ditto does.
            if negative && !digits.allSatisfy({ $0 == UInt8(ascii: "0") }) { return nil }
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let amount = Int64(String(decoding: digits, as: UTF8.self))
        else { return nil }
        guard amount.multipliedReportingOverflow(by: unit.milliseconds).overflow == false else { return nil }
        self.amount = amount
        self.unit = unit
        self.text = text
    }

    /// A duration in milliseconds, written `<n>ms` (negative values become 0).
    public init(milliseconds: Int64) {
        amount = max(0, milliseconds)
        unit = .milliseconds
        text = "\(amount)ms"
    }

    /// A duration in seconds, written `<n>s` (clamped to 0 ... `Int64.max / 1000`).
    public init(seconds: Int64) {
        amount = min(max(0, seconds), Int64.max / 1_000)
        unit = .seconds
        text = "\(amount)s"
    }

    /// Total milliseconds.
    public var milliseconds: Int64 { amount * unit.milliseconds }

    /// As a Swift `Duration`.
    public var duration: Duration { .milliseconds(milliseconds) }

    /// Whether the duration is zero (Ditto: `timeout: 0` means "do not wait").
    public var isZero: Bool { amount == 0 }

    /// The text it was written as.
    public var description: String { text }
}
