/// Ditto's thing ID rules (FACTS §b, `RegexPatterns.java`), as the config checks rendered samples and the namespace.
enum ThingIDRules {
    /// Empty, or letter-started segments of `[A-Za-z0-9_]` joined by `.` or `-`.
    static func isValidNamespace(_ namespace: String) -> Bool {
        if namespace.isEmpty { return true }
        var segmentStart = true
        for scalar in namespace.unicodeScalars {
            let isLetter = ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
            let isWord = isLetter || ("0"..."9").contains(scalar) || scalar == "_"
            if segmentStart {
                guard isLetter else { return false }
                segmentStart = false
            } else if scalar == "." || scalar == "-" {
                segmentStart = true
            } else if !isWord {
                return false
            }
        }
        return !segmentStart
    }

    /// At least one character; no `/`, no `\u{0}`-`\u{1F}`, no `\u{7F}`-`\u{FF}`.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && !name.unicodeScalars.contains { $0 == "/" || $0.value <= 0x1F || (0x7F...0xFF).contains($0.value) }
    }

    /// Why `id` is not a valid thing ID, or nil when it is.
    static func problem(with id: String) -> String? {
        guard let colon = id.firstIndex(of: ":") else { return "it has no ':' between namespace and name" }
        let namespace = String(id[..<colon])
        let name = String(id[id.index(after: colon)...])
        if !isValidNamespace(namespace) {
            return "namespace '\(namespace)' is invalid (letter-started parts of letters, digits and '_', joined by '.' or '-')"
        }
        if !isValidName(name) {
            return "name '\(name)' is invalid (no '/', no control characters, no characters U+007F to U+00FF such as 'ü')"
        }
        if id.utf16.count > 256 { return "it is longer than 256 characters" }
        return nil
    }
}
