#if canImport(Glibc)
import Glibc
#endif
import MosquittoTestSupport
import WebSocketCodec

/// Non-blocking POSIX socket steps shared by the test server and the test client.
enum Socket {
    /// A socket listening on 127.0.0.1 (or ::1) at a port the kernel picks, and that port.
    static func listenOnLoopback(ipv6: Bool = false) throws(TestFailure) -> (fd: Int32, port: Int) {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var storage = sockaddr_storage()
        var length = socklen_t(ipv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        withUnsafeMutableBytes(of: &storage) { bytes in
            if ipv6 {
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                address.sin6_addr = in6addr_loopback
                withUnsafeBytes(of: address) { bytes.copyMemory(from: $0) }
            } else {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                withUnsafeBytes(of: address) { bytes.copyMemory(from: $0) }
            }
        }
        let bound = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(fd, address, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, address, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw TestFailure("bind/listen on \(ipv6 ? "::1" : "127.0.0.1"): errno \(errno)")
        }
        setNonBlocking(fd)
        // sin_port and sin6_port sit at the same offset, after the family.
        let port = withUnsafeBytes(of: storage) { $0.load(fromByteOffset: 2, as: UInt16.self) }
        return (fd, Int(UInt16(bigEndian: port)))
    }

    static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Waits up to `milliseconds` for `events` on `fd` (and for input on `wake`, when given); returns the
    /// events that `fd` reported.
    static func wait(_ fd: Int32, for events: Int16, wake: Int32? = nil, milliseconds: Int32) -> Int16 {
        var fds = [pollfd(fd: fd, events: events, revents: 0)]
        if let wake { fds.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0)) }
        guard poll(&fds, nfds_t(fds.count), milliseconds) > 0 else { return 0 }
        if fds.count > 1, fds[1].revents != 0 {
            var drain = [UInt8](repeating: 0, count: 64)
            _ = read(wake!, &drain, drain.count)
        }
        return fds[0].revents
    }

    /// Writes as much of `bytes` as the socket takes now; nil when the socket failed.
    static func writeSome(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Int? {
        let written = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if written >= 0 { return written }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : nil
    }

    /// Writes all of `bytes`, waiting for the socket when it is full; false when it failed or `deadline` passed.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], deadline: ContinuousClock.Instant) -> Bool {
        var offset = 0
        while offset < bytes.count {
            guard let written = writeSome(fd, bytes[offset...]), ContinuousClock.now < deadline else { return false }
            offset += written
            if written == 0 { _ = wait(fd, for: Int16(POLLOUT), milliseconds: 50) }
        }
        return true
    }

    /// Reads into `space`: the byte count, 0 when nothing is there yet, nil at end of stream or on an error.
    static func readSome(_ fd: Int32, into space: UnsafeMutableRawBufferPointer) -> Int? {
        let count = recv(fd, space.baseAddress, space.count, 0)
        if count > 0 { return count }
        if count < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
        return nil
    }

    /// Reads an HTTP head, waiting until `deadline`; the bytes that came after it are returned with it.
    static func readHead(_ fd: Int32, deadline: ContinuousClock.Instant) throws -> HTTPHeadAndRest {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            if let (head, length) = try HTTPHead.parse(received) {
                return HTTPHeadAndRest(head: head, rest: Array(received[length...]))
            }
            _ = wait(fd, for: Int16(POLLIN), milliseconds: 50)
            guard let count = chunk.withUnsafeMutableBytes({ readSome(fd, into: $0) }) else {
                throw TestFailure("connection closed before the HTTP head was complete")
            }
            received += chunk[..<count]
        }
        throw TestFailure("no HTTP head before the deadline")
    }
}

/// An HTTP head and the bytes that followed it in the same reads (the first frames).
struct HTTPHeadAndRest {
    var head: HTTPHead
    var rest: [UInt8]
}
