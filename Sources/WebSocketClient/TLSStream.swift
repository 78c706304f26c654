import COpenSSL
#if canImport(Glibc)
import Glibc
#endif
import MQTT

/// TLS (OpenSSL, the library libmosquitto links) over a connected socket, as a ``ByteStream``: the handshake is
/// done, blocking with a deadline, when it is made; reads and writes after it never block.
///
/// A write that returned ``StreamIO/wouldBlock`` must be retried with at least the bytes it was given, from any
/// address (OpenSSL keeps the record it began).
public final class TLSStream: ByteStream {
    private let transport: SocketStream
    private let ssl: OpaquePointer
    /// POLLOUT while a read waits for the socket to take a record (a key update); POLLIN while a write waits for
    /// one to arrive (a TLS 1.2 renegotiation). Neither is the poll event the operation itself needs.
    private var readWants: Int16 = 0
    private var writeWants: Int16 = 0
    /// After a fatal error OpenSSL forbids SSL_shutdown.
    private var canSendCloseNotify = true
    private var isClosed = false

    public var fd: Int32 { transport.fd }

    /// Handshakes over `transport` with `settings`; `serverName` goes in SNI (unless it is an IP address) and is
    /// checked against the certificate when ``TLSSettings/verifyHostname``. On failure the socket stays open and
    /// nothing of OpenSSL's is left.
    init(over transport: SocketStream, settings: TLSSettings, serverName: String,
         step: ConnectStep) throws(WebSocketConnectError) {
        self.transport = transport
        ssl = try Self.handshake(transport.fd, settings: settings, serverName: serverName, step: step)
    }

    deinit { close() }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> StreamIO {
        transfer(buffer.count, own: Int16(POLLIN), wanting: &readWants) { SSL_read(ssl, buffer.baseAddress, $0) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) -> StreamIO {
        transfer(bytes.count, own: Int16(POLLOUT), wanting: &writeWants) { SSL_write(ssl, bytes.baseAddress, $0) }
    }

    /// One SSL_read or SSL_write of `count` bytes; `wants` becomes the poll event it waits for when that is not
    /// the operation's `own` (which the caller polls for anyway).
    private func transfer(_ count: Int, own: Int16, wanting wants: inout Int16,
                          _ operation: (Int32) -> Int32) -> StreamIO {
        guard count > 0, !isClosed else { return isClosed ? .closed : .transferred(0) }
        ERR_clear_error()
        let transferred = operation(Int32(clamping: count))
        wants = 0
        if transferred > 0 { return .transferred(Int(transferred)) }
        switch SSL_get_error(ssl, transferred) {
        case SSL_ERROR_WANT_READ:
            wants = Int16(POLLIN) & ~own
            return .wouldBlock
        case SSL_ERROR_WANT_WRITE:
            wants = Int16(POLLOUT) & ~own
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        case let error:
            canSendCloseNotify = false
            return .failed(Self.errorText(error, ssl: ssl))
        }
    }

    public var extraPollEvents: Int16 { readWants | writeWants }

    public var hasBufferedBytes: Bool { !isClosed && SSL_pending(ssl) > 0 }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        if canSendCloseNotify {
            // One non-blocking attempt: close_notify goes out if the socket takes it; the peer's is not awaited.
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
        }
        SSL_free(ssl)
        ERR_clear_error()
        transport.close()
    }

    // MARK: Setting up

    /// SAFETY: made once (a global's lazy initialisation is thread-safe) and never changed; OpenSSL only reads a
    /// BIO_METHOD after its set-up, from any thread.
    nonisolated(unsafe) private static let socketMethod = copenssl_nosigpipe_method_new()

    private static func handshake(_ fd: Int32, settings: TLSSettings, serverName: String,
                                  step: ConnectStep) throws(WebSocketConnectError) -> OpaquePointer {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw step.failure("SSL_CTX_new: \(queuedErrors())") }
        // The SSL holds its own reference.
        defer { SSL_CTX_free(context) }
        try configure(context, settings, step: step)
        guard let ssl = SSL_new(context) else { throw step.failure("SSL_new: \(queuedErrors())") }
        do throws(WebSocketConnectError) {
            guard let method = socketMethod, let bio = copenssl_nosigpipe_bio_new(method, fd) else {
                throw step.failure("BIO_new: \(queuedErrors())")
            }
            SSL_set_bio(ssl, bio, bio)
            copenssl_set_nonblocking_client_modes(ssl)
            try expectServerName(ssl, serverName, check: settings.verifyHostname && !settings.insecure, step: step)
            while true {
                ERR_clear_error()
                let result = SSL_connect(ssl)
                if result == 1 { return ssl }
                switch SSL_get_error(ssl, result) {
                case SSL_ERROR_WANT_READ: try step.wait(fd, for: Int16(POLLIN))
                case SSL_ERROR_WANT_WRITE: try step.wait(fd, for: Int16(POLLOUT))
                case let error: throw step.failure(errorText(error, ssl: ssl))
                }
            }
        } catch {
            SSL_free(ssl)
            ERR_clear_error()
            throw error
        }
    }

    private static func configure(_ context: OpaquePointer, _ settings: TLSSettings,
                                  step: ConnectStep) throws(WebSocketConnectError) {
        SSL_CTX_set_verify(context, settings.insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nil)
        if settings.caFile != nil || settings.caPath != nil {
            guard SSL_CTX_load_verify_locations(context, settings.caFile, settings.caPath) == 1 else {
                let source = [settings.caFile, settings.caPath].compactMap { $0 }.joined(separator: " and ")
                throw step.failure("cannot load the CA certificates from \(source): \(queuedErrors())")
            }
        } else {
            guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                throw step.failure("cannot load the system's CA certificates: \(queuedErrors())")
            }
        }
        if let certFile = settings.certFile {
            guard SSL_CTX_use_certificate_chain_file(context, certFile) == 1 else {
                throw step.failure("cannot load the client certificate \(certFile): \(queuedErrors())")
            }
        }
        if let keyFile = settings.keyFile {
            // Checked against the certificate loaded above ("key values mismatch").
            guard SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else {
                throw step.failure("cannot load the client key \(keyFile): \(queuedErrors())")
            }
        }
        if let version = settings.version {
            let minimum = switch version {
            case .tls12: TLS1_2_VERSION
            case .tls13: TLS1_3_VERSION
            }
            guard copenssl_set_min_proto_version(context, minimum) == 1 else {
                throw step.failure("cannot require \(version.rawValue): \(queuedErrors())")
            }
        }
    }

    /// SNI for a host name (RFC 6066 section 3 allows no IP address there), and the certificate check of the
    /// name or address.
    private static func expectServerName(_ ssl: OpaquePointer, _ serverName: String, check: Bool,
                             step: ConnectStep) throws(WebSocketConnectError) {
        if isIPAddress(serverName) {
            guard !check || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) == 1 else {
                throw step.failure("cannot check the certificate for \(serverName): \(queuedErrors())")
            }
            return
        }
        guard copenssl_set_tlsext_host_name(ssl, serverName) == 1 else {
            throw step.failure("cannot send \(serverName) as SNI: \(queuedErrors())")
        }
        guard !check || SSL_set1_host(ssl, serverName) == 1 else {
            throw step.failure("cannot check the certificate for \(serverName): \(queuedErrors())")
        }
    }

    private static func isIPAddress(_ host: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET, host, &address) == 1 || inet_pton(AF_INET6, host, &address) == 1
    }

    /// What failed, for the log: the certificate check's verdict when it failed, else OpenSSL's error queue, else
    /// the system call's.
    private static func errorText(_ error: Int32, ssl: OpaquePointer) -> String {
        let verdict = SSL_get_verify_result(ssl)
        if verdict != X509_V_OK {
            return "certificate verify failed: " + String(cString: X509_verify_cert_error_string(verdict))
        }
        let queued = queuedErrors()
        if !queued.isEmpty { return queued }
        if error == SSL_ERROR_SYSCALL { return errno == 0 ? "the connection closed" : systemError(errno) }
        return "SSL error \(error)"
    }

    /// OpenSSL's error queue of this thread as text (`error:0A000086:SSL routines::certificate verify failed`),
    /// emptied.
    private static func queuedErrors() -> String {
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 256)
        while case let code = ERR_get_error(), code != 0 {
            ERR_error_string_n(code, &buffer, buffer.count)
            lines.append(text(ofCString: buffer))
        }
        return lines.joined(separator: "; ")
    }
}
