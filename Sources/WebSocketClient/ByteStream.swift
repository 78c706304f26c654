/// A connected byte stream the WebSocket client reads and writes without blocking: a TCP socket (``SocketStream``)
/// or TLS over one (``TLSStream``). Used on one thread at a time (the connector's, then the event loop's).
public protocol ByteStream: AnyObject {
    /// The socket, for `poll`.
    var fd: Int32 { get }
    /// Reads what is there, at most `buffer.count` bytes.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> StreamIO
    /// Writes what the socket takes now, at most `bytes.count`.
    func write(_ bytes: UnsafeRawBufferPointer) -> StreamIO
    /// Poll events the stream needs besides the caller's own, e.g. POLLOUT while a TLS read waits to write (a key
    /// update), POLLIN while a TLS write waits to read; 0 for a plain socket.
    var extraPollEvents: Int16 { get }
    /// Bytes already read from the socket and buffered inside the stream (TLS records decrypted past what a read
    /// returned): the caller reads again before it polls.
    var hasBufferedBytes: Bool { get }
    /// Closes the socket (and sends TLS's close_notify when it can without blocking). Idempotent.
    func close()
}

/// How one read or write of a ``ByteStream`` went.
public enum StreamIO: Equatable, Sendable {
    /// This many bytes (more than 0).
    case transferred(Int)
    /// Nothing now: poll and try again.
    case wouldBlock
    /// The peer closed the stream (end of file, or TLS close_notify).
    case closed
    /// The stream failed; the text says why, for the log.
    case failed(String)
}
