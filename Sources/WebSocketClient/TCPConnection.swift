#if canImport(Glibc)
import Glibc
#endif
import WebSocketCodec

/// One address of a host, as `getaddrinfo` gave it.
struct SocketAddress {
    var storage: sockaddr_storage
    var length: socklen_t
    /// `192.0.2.1:443` or `[2001:db8::1]:443`.
    var text: String

    var family: Int32 { Int32(storage.ss_family) }
}

/// Resolving a host and connecting a non-blocking TCP socket to one of its addresses.
enum TCPConnection {
    /// A connected socket to `host`:`port` (see ``connect(toAny:step:)``).
    static func open(host: String, port: Int, step: ConnectStep) throws(WebSocketConnectError) -> SocketStream {
        try connect(toAny: resolve(host: host, port: port, step: step), step: step)
    }

    /// Every address of `host` (IPv6 and IPv4), in `getaddrinfo`'s order.
    static func resolve(host: String, port: Int, step: ConnectStep) throws(WebSocketConnectError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        // getaddrinfo has no deadline of its own: the resolver's timeouts (resolv.conf) bound it.
        let result = getaddrinfo(host, String(port), &hints, &list)
        guard result == 0, let list else {
            throw step.failure(result == EAI_SYSTEM ? systemError(errno) : String(cString: gai_strerror(result)))
        }
        defer { freeaddrinfo(list) }
        guard ContinuousClock.now < step.deadline else { throw step.timedOut }
        var addresses: [SocketAddress] = []
        var next: UnsafeMutablePointer<addrinfo>? = list
        while let entry = next?.pointee {
            var storage = sockaddr_storage()
            let bytes = UnsafeRawBufferPointer(start: entry.ai_addr, count: Int(entry.ai_addrlen))
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: bytes) }
            let text = numericAuthority(entry.ai_addr, entry.ai_addrlen)
            addresses.append(SocketAddress(storage: storage, length: entry.ai_addrlen, text: text))
            next = entry.ai_next
        }
        return addresses
    }

    /// Tries each address in turn until one connects, each with an equal share of what is left of the deadline;
    /// the error lists every address's failure.
    static func connect(toAny addresses: [SocketAddress], step: ConnectStep) throws(WebSocketConnectError) -> SocketStream {
        var failures: [String] = []
        for (index, address) in addresses.enumerated() {
            let share = (step.deadline - .now) / (addresses.count - index)
            let attempt = ConnectStep(stage: .connect, address: address.text, deadline: min(step.deadline, .now + share),
                                      timeout: step.timeout)
            do {
                return try connect(address, step: attempt)
            } catch {
                let reason = switch error {
                case .failed(_, _, let reason): reason
                default: "no answer within \(share)"
                }
                failures.append(addresses.count == 1 && address.text == step.address ? reason : "\(address.text): \(reason)")
            }
        }
        guard ContinuousClock.now < step.deadline else {
            throw .timedOut(.connect, address: step.address, after: step.timeout)
        }
        throw .failed(.connect, address: step.address, reason: failures.joined(separator: "; "))
    }

    private static func connect(_ address: SocketAddress, step: ConnectStep) throws(WebSocketConnectError) -> SocketStream {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw step.failure("socket: \(systemError(errno))") }
        // From here the stream owns the descriptor: thrown away, it closes it.
        let stream = SocketStream(fd: fd)
        var noDelay: Int32 = 1
        // Frames are written whole; Nagle would hold a small one back for the previous one's ACK.
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        var storage = address.storage
        let connected = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
        }
        if connected != 0 {
            guard errno == EINPROGRESS || errno == EINTR else { throw step.failure(systemError(errno)) }
            try step.wait(fd, for: Int16(POLLOUT))
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { throw step.failure(systemError(errno)) }
            guard error == 0 else { throw step.failure(systemError(error)) }
        }
        return stream
    }

    private static func numericAuthority(_ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        guard getnameinfo(address, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                          NI_NUMERICHOST | NI_NUMERICSERV) == 0
        else { return "an address of family \(address.pointee.sa_family)" }
        return HTTPConnectRequest(host: text(ofCString: host), port: Int(text(ofCString: service)) ?? 0).authority
    }
}
