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

        /// The unit a suffix names (`rawValue`), read from bytes.
        init?(suffix: UnsafeBufferPointer<UInt8>) {
            switch suffix.count {
            case 0: self = .implicitSeconds
            case 1:
                switch suffix[0] {
                case UInt8(ascii: "s"): self = .seconds
                case UInt8(ascii: "m"): self = .minutes
                case UInt8(ascii: "h"): self = .hours
                case UInt8(ascii: "d"): self = .days
                case UInt8(ascii: "w"): self = .weeks
                case UInt8(ascii: "y"): self = .years
                default: return nil
                }
            case 2:
                switch (suffix[0], suffix[1]) {
                case (UInt8(ascii: "m"), UInt8(ascii: "s")): self = .milliseconds
                case (UInt8(ascii: "m"), UInt8(ascii: "o")): self = .months
                default: return nil
                }
            default: return nil
            }
        }

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
        // On the bytes, without an array or strings for the parts: a request's `timeout` is parsed for every request.
        var copy = text
        guard let (amount, unit) = copy.withUTF8({ Self.parse($0) }) else { return nil }
        self.amount = amount
        self.unit = unit
        self.text = text
    }

    private static func parse(_ utf8: UnsafeBufferPointer<UInt8>) -> (amount: Int64, unit: Unit)? {
        func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
        var suffixStart = utf8.count
        while suffixStart > 0 && !isDigit(utf8[suffixStart - 1]) { suffixStart -= 1 }
        guard let unit = Unit(suffix: UnsafeBufferPointer(rebasing: utf8[suffixStart...])) else { return nil }
        var start = 0
        var negative = false
        if suffixStart > 0 && (utf8[0] == UInt8(ascii: "+") || utf8[0] == UInt8(ascii: "-")) {
            negative = utf8[0] == UInt8(ascii: "-")
            start = 1
        }
        guard start < suffixStart else { return nil }
        var amount: Int64 = 0
        for index in start..<suffixStart {
            let c = utf8[index]
            guard isDigit(c) else { return nil }
            let (times10, overflow) = amount.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int64(c - UInt8(ascii: "0")))
            guard !overflow, !overflow2 else { return nil }
            amount = sum
        }
        // "-0" is zero and allowed; any other negative amount is refused like Ditto does.
        if negative && amount != 0 { return nil }
        guard amount.multipliedReportingOverflow(by: unit.milliseconds).overflow == false else { return nil }
        return (amount, unit)
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
