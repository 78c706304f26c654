import DittoProtocol
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

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
