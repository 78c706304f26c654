/// TLS for one broker connection: what the config file's `tls:` block says and what the client hands to
/// libmosquitto. File paths are absolute (the config loader resolves them against the config file).
public struct TLSSettings: Sendable, Hashable {
    /// Minimum TLS version.
    public enum Version: String, Sendable, Hashable {
        case tls12 = "tlsv1.2"
        case tls13 = "tlsv1.3"
    }

    /// CA certificate file (PEM); with neither this nor ``caPath`` the system CAs are used.
    public var caFile: String?
    /// Directory of hashed CA certificates.
    public var caPath: String?
    /// Client certificate for mutual TLS (with ``keyFile``).
    public var certFile: String?
    /// The client certificate's private key (with ``certFile``).
    public var keyFile: String?
    /// Minimum TLS version; nil lets OpenSSL choose.
    public var version: Version?
    /// Check the broker's host name against its certificate.
    public var verifyHostname: Bool
    /// Accept any certificate (testing only; `check` warns).
    public var insecure: Bool

    public init(caFile: String? = nil, caPath: String? = nil, certFile: String? = nil, keyFile: String? = nil,
                version: Version? = nil, verifyHostname: Bool = true, insecure: Bool = false) {
        self.caFile = caFile
        self.caPath = caPath
        self.certFile = certFile
        self.keyFile = keyFile
        self.version = version
        self.verifyHostname = verifyHostname
        self.insecure = insecure
    }
}
