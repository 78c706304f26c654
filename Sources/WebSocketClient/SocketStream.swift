#if canImport(Glibc)
import Glibc
#endif

/// A connected, non-blocking TCP socket as a ``ByteStream``; it owns the descriptor and closes it.
public final class SocketStream: ByteStream {
    public let fd: Int32
    private var isClosed = false

    /// Takes `fd`, a connected socket already set non-blocking.
    public init(fd: Int32) {
        self.fd = fd
    }

    deinit { close() }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> StreamIO {
        guard buffer.count > 0 else { return .transferred(0) }
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, 0)
            if count > 0 { return .transferred(count) }
            if count == 0 { return .closed }
            if errno == EINTR { continue }
            return Self.outcome(ofErrno: errno)
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) -> StreamIO {
        guard bytes.count > 0 else { return .transferred(0) }
        while true {
            // MSG_NOSIGNAL: a peer that went away is an error here, not a SIGPIPE that ends the process.
            let count = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if count >= 0 { return count == 0 ? .wouldBlock : .transferred(count) }
            if errno == EINTR { continue }
            return Self.outcome(ofErrno: errno)
        }
    }

    public var extraPollEvents: Int16 { 0 }
    public var hasBufferedBytes: Bool { false }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        _ = Glibc.close(fd)
    }

    private static func outcome(ofErrno error: Int32) -> StreamIO {
        error == EAGAIN || error == EWOULDBLOCK ? .wouldBlock : .failed(systemError(error))
    }
}

/// `strerror`'s text for an errno value.
func systemError(_ error: Int32) -> String {
    String(cString: strerror(error))
}

/// The text of a NUL-terminated buffer a C function filled.
func text(ofCString buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
