import Testing

@testable import DittoProtocol

/// `java.time.Instant.parse` (ISO_INSTANT) takes hours 00-23 only (scripts/mutants.sh M10, which survived its
/// first run).
struct TimestampTests {
    @Test(arguments: [
        ("2026-01-01T23:59:59Z", true), ("2026-01-01T00:00:00Z", true), ("2026-01-01T24:00:00Z", false),
        ("2026-01-01T23:60:00Z", false), ("2026-01-01T23:59:60Z", false), ("2026-13-01T00:00:00Z", false),
    ])
    func instantFields(_ text: String, _ valid: Bool) {
        #expect(Timestamp.isValidInstant(text) == valid, "\(text)")
    }
}
