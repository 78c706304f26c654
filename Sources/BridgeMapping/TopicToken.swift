import Foundation

/// Correlation ids inside MQTT topic segments: used as they are when they are safe in a topic level,
/// otherwise `b64-` plus unpadded base64url, which is safe and turns back into the same id.
public enum TopicToken {
    static let prefix = "b64-"

    public static func encode(_ id: String) -> String {
        let isUnsafe = id.isEmpty || id.hasPrefix(prefix) || id.utf8.count > 200
            || id.unicodeScalars.contains { $0 == "/" || $0 == "+" || $0 == "#" || $0.value < 0x20 || $0.value == 0x7F }
        guard isUnsafe else { return id }
        let base64 = Data(id.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return prefix + base64
    }

    public static func decode(_ token: String) -> String {
        guard token.hasPrefix(prefix) else { return token }
        var base64 = String(token.dropFirst(prefix.count))
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let id = String(data: data, encoding: .utf8) else { return token }
        return id
    }
}
