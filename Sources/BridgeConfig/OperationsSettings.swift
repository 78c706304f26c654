#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Yams

/// The `operations:` block: where the HTTP endpoint for `/metrics`, `/health` and `/ready` listens.
public struct OperationsSettings: Sendable, Hashable {
    /// nil: no endpoint (the default, so two bridges on one host never fight over a port and nothing is
    /// exposed that the operator did not ask for).
    public var listen: ListenAddress?

    /// No endpoint.
    public init(listen: ListenAddress? = nil) {
        self.listen = listen
    }
}

/// A numeric IP address and a TCP port to listen on, written `127.0.0.1:9464` or `[::1]:9464`.
///
/// Host names are refused: a listener binds to an interface address, and resolving a name at start-up
/// would make the bound interface depend on DNS.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// Which IP version ``host`` is.
    public enum Family: Sendable, Hashable {
        case ipv4
        case ipv6
    }

    /// The address literal without brackets (`127.0.0.1`, `::1`, `0.0.0.0`, `::`).
    public var host: String
    /// The TCP port; 0 lets the kernel pick one (tests only; the config file requires 1–65535).
    public var port: Int
    /// IPv4 or IPv6.
    public var family: Family

    /// Parses `HOST:PORT` (IPv4) or `[HOST]:PORT` (IPv6).
    /// - throws: ``ListenAddress/ParseError`` naming what is wrong.
    public init(parsing text: String, allowPortZero: Bool = false) throws(ParseError) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw ParseError("'[' without a closing ']'") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ParseError("no port after the IPv6 address") }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw ParseError("no port") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") {
                throw ParseError("an IPv6 address must be written in brackets")
            }
        }
        let host = String(hostPart)
        let family: Family
        if Self.isLiteral(host, family: AF_INET) {
            family = .ipv4
        } else if Self.isLiteral(host, family: AF_INET6) {
            family = .ipv6
        } else if host.isEmpty {
            throw ParseError("no address before the port")
        } else {
            throw ParseError("'\(host)' is not a numeric IP address")
        }
        guard portPart.allSatisfy(\.isASCII), let port = Int(portPart),
            (allowPortZero ? 0 : 1)...65535 ~= port
        else { throw ParseError("'\(portPart)' is not a port (\(allowPortZero ? 0 : 1)–65535)") }
        self.host = host
        self.port = port
        self.family = family
    }

    /// An already valid address.
    public init(host: String, port: Int, family: Family) {
        self.host = host
        self.port = port
        self.family = family
    }

    /// Whether only this machine can connect (127.0.0.0/8 or ::1).
    public var isLoopback: Bool {
        switch family {
        case .ipv4: return host.hasPrefix("127.")
        case .ipv6: return host == "::1"
        }
    }

    public var description: String {
        family == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private static func isLiteral(_ host: String, family: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        return host.withCString { inet_pton(family, $0, &buffer) } == 1
    }

    /// Why a listen address does not parse.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// What is wrong.
        public var message: String
        init(_ message: String) { self.message = message }
        public var description: String { message }
    }
}

extension ConfigLoader {
    func operationsBlock(_ v: YAMLValue?) -> OperationsSettings {
        var settings = OperationsSettings()
        guard let v, !v.isNull, let m = reader.mapping(v, keys: ConfigSchema.operations) else { return settings }
        guard let l = m["listen"], !l.isNull else { return settings }
        if case .scalar = l.node, l.node.tagName == .bool, let on = reader.bool(l) {
            if on {
                reader.error(
                    l, "listen takes an address, not true",
                    hint: "write listen: \"127.0.0.1:9464\" (this machine only) or \"0.0.0.0:9464\" (every interface)")
            }
            return settings
        }
        guard let text = expanded(l) else { return settings }
        do {
            settings.listen = try ListenAddress(parsing: text)
        } catch {
            reader.error(
                l, "invalid listen address '\(text)': \(error.message)",
                hint: "write IP:PORT, e.g. \"127.0.0.1:9464\", \"0.0.0.0:9464\" or \"[::1]:9464\"")
        }
        return settings
    }
}
