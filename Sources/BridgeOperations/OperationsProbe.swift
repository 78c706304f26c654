public import BridgeConfig

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A one-shot HTTP GET against the operations endpoint, for `ditto-mqtt-bridge probe` (a container
/// HEALTHCHECK without curl in the image). Blocking; meant for a short-lived command, not for the runtime.
public enum OperationsProbe {
    /// Why the probe got no HTTP answer.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// What went wrong.
        public var description: String
    }

    /// Where to connect for a configured listen address: a wildcard address becomes the loopback address.
    public static func target(for listen: ListenAddress) -> ListenAddress {
        switch (listen.family, listen.host) {
        case (.ipv4, "0.0.0.0"): return ListenAddress(host: "127.0.0.1", port: listen.port, family: .ipv4)
        case (.ipv6, "::"): return ListenAddress(host: "::1", port: listen.port, family: .ipv6)
        default: return listen
        }
    }

    /// GETs `path` and returns the status code and body.
    /// - throws: ``Failure`` when nothing answers within `timeoutSeconds` or the answer is not HTTP.
    public static func get(_ path: String, at address: ListenAddress, timeoutSeconds: Int = 5) throws(Failure) -> (status: Int, body: String) {
        let family = address.family == .ipv4 ? AF_INET : AF_INET6
        #if canImport(Darwin)
        let fd = socket(family, SOCK_STREAM, 0)
        #else
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        #endif
        guard fd >= 0 else { throw Failure(description: "socket(): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var storage = sockaddr_storage()
        let length: socklen_t
        let port = in_port_t(UInt16(clamping: address.port).bigEndian)
        switch address.family {
        case .ipv4:
            var ipv4 = sockaddr_in()
            ipv4.sin_family = sa_family_t(AF_INET)
            ipv4.sin_port = port
            guard inet_pton(AF_INET, address.host, &ipv4.sin_addr) == 1 else {
                throw Failure(description: "'\(address.host)' is not an IPv4 address")
            }
            withUnsafeBytes(of: ipv4) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        case .ipv6:
            var ipv6 = sockaddr_in6()
            ipv6.sin6_family = sa_family_t(AF_INET6)
            ipv6.sin6_port = port
            guard inet_pton(AF_INET6, address.host, &ipv6.sin6_addr) == 1 else {
                throw Failure(description: "'\(address.host)' is not an IPv6 address")
            }
            withUnsafeBytes(of: ipv6) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
        let connected = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0 else {
            throw Failure(description: "cannot connect to \(address): \(String(cString: strerror(errno)))")
        }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
        #if canImport(Darwin)
        let noSignal: Int32 = 0
        #else
        let noSignal = Int32(MSG_NOSIGNAL)  // a closed peer is an error here, not a SIGPIPE
        #endif
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, noSignal) }
        guard sent == request.count else { throw Failure(description: "sending to \(address) failed") }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while received.count < 1 << 24 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw Failure(description: "no answer from \(address): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            received += buffer[0..<n]
        }
        let statusLine = String(decoding: received.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw Failure(description: "\(address) did not answer HTTP: '\(statusLine.prefix(80))'")
        }
        let body = HTTPServerLoop.headEnd(in: received, limit: received.count).map {
            String(decoding: received[$0...], as: UTF8.self)
        } ?? ""
        return (status, body)
    }
}
