import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the server's thread gets from ``OperationsServer``; all of it Sendable.
struct LoopSettings: Sendable {
    let listener: Int32
    let wake: Int32
    let limits: OperationsServer.Limits
    let handler: OperationsHandler
    let logger: Logger
}

/// The operations endpoint's event loop: one thread, one `poll(2)` over the wake-up pipe, the listener and
/// every connection, all nonblocking. Created and run on that thread only, so its state needs no lock.
///
/// Per connection: read until the head's empty line (at most ``OperationsServer/Limits/maxRequestHeadBytes``,
/// else 431), answer, write; then read the next request (keep-alive) or half-close and discard what the
/// client still sends until it closes (so the answer is not lost to a reset). Each phase has a deadline
/// (``OperationsServer/Limits/requestTimeout``); a connection that misses it is closed.
final class HTTPServerLoop {
    private final class Connection {
        enum State {
            case reading
            case writing(closeAfter: Bool)
            /// Answer sent and write side shut; reading until the peer closes or the deadline.
            case draining
        }

        let fd: Int32
        var state = State.reading
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        var deadline: ContinuousClock.Instant
        var isClosed = false

        init(fd: Int32, deadline: ContinuousClock.Instant) {
            self.fd = fd
            self.deadline = deadline
        }

        var wantsToWrite: Bool {
            if case .writing = state { return true }
            return false
        }
    }

    private let settings: LoopSettings
    private let control: ServerControl
    private let logger: Logger
    private var connections: [Connection] = []
    private var pollDescriptors: [pollfd] = []
    private var scratch = [UInt8](repeating: 0, count: 16384)
    /// After an accept failure for lack of descriptors or memory: the listener is left alone until then.
    private var acceptPausedUntil: ContinuousClock.Instant?
    private var lastWarning: [String: ContinuousClock.Instant] = [:]
    /// How long a closing connection may take to close its side after the answer.
    private let lingerTime: Duration

    init(_ settings: LoopSettings, control: ServerControl) {
        self.settings = settings
        self.control = control
        logger = settings.logger
        lingerTime = min(settings.limits.requestTimeout, .seconds(2))
    }

    /// Serves until ``ServerControl/stop()``; closes every connection (not the listener) before it returns.
    /// - returns: nil, or why the loop could not go on.
    func run() -> String? {
        defer {
            for connection in connections { close(connection) }
            connections.removeAll()
        }
        let clock = ContinuousClock()
        while !control.stopRequested {
            var now = clock.now
            for connection in connections where connection.deadline <= now {
                logger.trace("operations connection closed: deadline passed", metadata: ["fd": "\(connection.fd)"])
                close(connection)
            }
            connections.removeAll { $0.isClosed }
            if let paused = acceptPausedUntil, paused <= now { acceptPausedUntil = nil }

            pollDescriptors.removeAll(keepingCapacity: true)
            pollDescriptors.append(pollfd(fd: settings.wake, events: Int16(POLLIN), revents: 0))
            // A negative descriptor is skipped by poll: the listener rests while accepting is paused.
            pollDescriptors.append(
                pollfd(fd: acceptPausedUntil == nil ? settings.listener : -1, events: Int16(POLLIN), revents: 0))
            for connection in connections {
                pollDescriptors.append(
                    pollfd(fd: connection.fd, events: Int16(connection.wantsToWrite ? POLLOUT : POLLIN), revents: 0))
            }
            var nextDeadline = connections.lazy.map(\.deadline).min()
            if let paused = acceptPausedUntil { nextDeadline = min(nextDeadline ?? paused, paused) }
            let timeout = nextDeadline.map { Self.milliseconds(until: $0, from: now) } ?? -1

            let ready = poll(&pollDescriptors, nfds_t(pollDescriptors.count), timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                let failure = SocketFailure("poll")
                logger.error("operations endpoint stops: \(failure)")
                return failure.description
            }
            if ready == 0 { continue }
            now = clock.now
            if pollDescriptors[0].revents != 0 {
                while read(settings.wake, &scratch, scratch.count) > 0 {}
            }
            for (offset, connection) in connections.enumerated() {
                let events = pollDescriptors[offset + 2].revents
                if events != 0 { service(connection, events: events, now: now) }
            }
            connections.removeAll { $0.isClosed }
            if pollDescriptors[1].revents != 0 { acceptAll(now: now) }
        }
        return nil
    }

    // MARK: Connections

    private func acceptAll(now: ContinuousClock.Instant) {
        // Bounded per wake-up so a flood of connects cannot starve the open connections.
        for _ in 0..<64 {
            let fd = accept(settings.listener, nil, nil)
            if fd < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK:
                    return
                case EINTR, ECONNABORTED, EPROTO, EPERM:
                    continue
                default:
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection stays queued; retry shortly
                    // instead of spinning on a listener that stays readable.
                    let failure = SocketFailure("accept")
                    warn("accept", "operations endpoint cannot accept connections for now: \(failure)", now: now)
                    acceptPausedUntil = now + .milliseconds(100)
                    return
                }
            }
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            guard connections.count < settings.limits.maxConnections else {
                refuse(fd)
                warn(
                    "capacity",
                    "operations endpoint has \(connections.count) connections open, its limit: answering 503 to more",
                    now: now)
                continue
            }
            connections.append(Connection(fd: fd, deadline: now + settings.limits.requestTimeout))
        }
    }

    /// Over the connection limit: a short 503 written without waiting, then closed. Best effort (whatever the
    /// client already sent is read first, so the close does not reset the connection before the answer).
    private func refuse(_ fd: Int32) {
        _ = recv(fd, &scratch, scratch.count, Int32(MSG_DONTWAIT))
        let answer = Response.text(503, "too many connections; try again\n").encoded(close: true)
        _ = answer.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        _ = shutdown(fd, Int32(SHUT_WR))
        closeDescriptor(fd)
    }

    private func service(_ connection: Connection, events: Int16, now: ContinuousClock.Instant) {
        if events & Int16(POLLNVAL) != 0 {
            close(connection)
            return
        }
        switch connection.state {
        case .reading:
            readRequest(connection, now: now)
        case .writing:
            if events & Int16(POLLERR) != 0 {
                close(connection)
                return
            }
            flush(connection, now: now)
            if case .reading = connection.state { process(connection, now: now) }
        case .draining:
            drain(connection)
        }
    }

    private func readRequest(_ connection: Connection, now: ContinuousClock.Instant) {
        let limit = settings.limits.maxRequestHeadBytes
        // process() leaves fewer than `limit` bytes unanswered, so there is room for at least one.
        let room = min(scratch.count, limit - connection.input.count)
        let count = recv(connection.fd, &scratch, room, 0)
        if count > 0 {
            connection.input += scratch[0..<count]
            process(connection, now: now)
        } else if count == 0 {
            close(connection)  // the peer closed, between requests or in the middle of one
        } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
            close(connection)
        }
    }

    /// Answers every complete head in the input, as long as the connection stays open for more.
    private func process(_ connection: Connection, now: ContinuousClock.Instant) {
        let limit = settings.limits.maxRequestHeadBytes
        while case .reading = connection.state {
            // Empty lines before a request line are ignored (RFC 9112 section 2.2).
            var start = 0
            while start + 1 < connection.input.count, connection.input[start] == 13, connection.input[start + 1] == 10 {
                start += 2
            }
            if start > 0 { connection.input.removeFirst(start) }
            guard let end = Self.headEnd(in: connection.input, limit: limit) else {
                if Self.hasBareLineFeed(connection.input) {
                    // Lines must end in CRLF; a client that ends them in LF alone would otherwise wait for
                    // the deadline.
                    respond(connection, .text(400, "bad request: a line ending in LF without CR\n"), close: true, now: now)
                } else if connection.input.count >= limit {
                    respond(
                        connection,
                        .text(431, "request head larger than \(limit) bytes\n"), close: true, now: now)
                }
                return
            }
            let head = connection.input[0..<(end - 4)]
            let answer: Response
            let close: Bool
            do {
                let request = try RequestHead.parse(head)
                answer = settings.handler.respond(to: request)
                close = !request.keepAlive || request.hasBody
                logger.trace(
                    "operations request", metadata: ["path": "\(request.path)", "status": "\(answer.status)"])
            } catch {
                switch error {
                case .malformed(let reason):
                    answer = .text(400, "bad request: \(reason)\n")
                case .versionNotSupported(let version):
                    answer = .text(505, "\(version) is not supported; this endpoint speaks HTTP/1.1 and HTTP/1.0\n")
                }
                close = true
            }
            connection.input.removeFirst(end)
            respond(connection, answer, close: close, now: now)
        }
    }

    /// The index just past the first `CRLF CRLF` within the first `limit` bytes.
    static func headEnd(in bytes: [UInt8], limit: Int) -> Int? {
        let searchEnd = min(bytes.count, limit)
        var index = 0
        while index + 4 <= searchEnd {
            if bytes[index + 3] != 10 {
                index += bytes[index + 3] == 13 ? 1 : 4
                continue
            }
            if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13 { return index + 4 }
            index += 1
        }
        return nil
    }

    static func hasBareLineFeed(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first else { return false }
        if first == 10 { return true }
        for index in 1..<bytes.count where bytes[index] == 10 && bytes[index - 1] != 13 { return true }
        return false
    }

    private func respond(_ connection: Connection, _ answer: Response, close: Bool, now: ContinuousClock.Instant) {
        connection.output = answer.encoded(close: close)
        connection.written = 0
        connection.state = .writing(closeAfter: close)
        connection.deadline = now + settings.limits.requestTimeout
        flush(connection, now: now)
    }

    private func flush(_ connection: Connection, now: ContinuousClock.Instant) {
        guard case .writing(let closeAfter) = connection.state else { return }
        while connection.written < connection.output.count {
            let count = connection.output.withUnsafeBytes { bytes in
                send(
                    connection.fd, bytes.baseAddress! + connection.written, bytes.count - connection.written,
                    Int32(MSG_NOSIGNAL))
            }
            if count > 0 {
                connection.written += count
            } else if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return  // poll says when there is room
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                close(connection)
                return
            }
        }
        connection.output = []
        connection.written = 0
        if closeAfter {
            _ = shutdown(connection.fd, Int32(SHUT_WR))
            connection.input = []
            connection.state = .draining
            connection.deadline = now + lingerTime
        } else {
            connection.state = .reading
            connection.deadline = now + settings.limits.requestTimeout
        }
    }

    private func drain(_ connection: Connection) {
        let count = recv(connection.fd, &scratch, scratch.count, 0)
        if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            close(connection)
        }
    }

    private func close(_ connection: Connection) {
        guard !connection.isClosed else { return }
        connection.isClosed = true
        connection.output = []
        connection.input = []
        closeDescriptor(connection.fd)
    }

    // MARK: Helpers

    /// At most one line a minute per kind, so a flood of refused connections does not flood the log.
    private func warn(_ kind: String, _ message: @autoclosure () -> String, now: ContinuousClock.Instant) {
        if let last = lastWarning[kind], now - last < .seconds(60) { return }
        lastWarning[kind] = now
        logger.warning("\(message())")
    }

    /// Rounded up, so poll does not wake a millisecond before a deadline and spin.
    static func milliseconds(until deadline: ContinuousClock.Instant, from now: ContinuousClock.Instant) -> Int32 {
        guard deadline > now else { return 0 }
        let (seconds, attoseconds) = (deadline - now).components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: milliseconds)
    }
}
