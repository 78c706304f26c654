import DittoProtocol

/// Explains, in config terms, why a rendered sample is not a Ditto thing ID; the rules themselves are
/// DittoProtocol's ``ThingID``.
enum ThingIDRules {
    static func isValidNamespace(_ namespace: String) -> Bool { ThingID.isValidNamespace(namespace) }

    static func isValidName(_ name: String) -> Bool { ThingID.isValidName(name) }

    /// Why `id` is not a valid thing ID, or nil when it is.
    static func problem(with id: String) -> String? {
        guard let colon = id.firstIndex(of: ":") else { return "it has no ':' between namespace and name" }
        let namespace = String(id[..<colon])
        let name = String(id[id.index(after: colon)...])
        if !ThingID.isValidNamespace(namespace) {
            return "namespace '\(namespace)' is invalid (letter-started parts of letters, digits and '_', joined by '.' or '-')"
        }
        if !ThingID.isValidName(name) {
            return "name '\(name)' is invalid (no '/', no control characters, no characters U+007F to U+00FF such as 'ü')"
        }
        if (try? ThingID(id)) == nil { return "it is longer than \(ThingID.maximumLength) characters" }
        return nil
    }
}
