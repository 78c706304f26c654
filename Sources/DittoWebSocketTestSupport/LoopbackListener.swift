import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A listening socket on 127.0.0.1 (or ::1) at a free port that serves each connection on a thread of its own, and on
/// ``stop(endingConnections:)`` waits for exactly the threads it started.
final class LoopbackListener: Sendable {
    let port: Int
    private let fd: Int32
    private let threads = DispatchGroup()
    private let stopping = Atomic<Bool>(false)

    init(ipv6: Bool = false) throws {
        (fd, port) = try Socket.listenOnLoopback(ipv6: ipv6)
    }

    /// Starts accepting: `serve` gets each accepted socket, non-blocking, and closes it.
    func start(serve: @escaping @Sendable (Int32) -> Void) {
        startThread { [self] in
            while !stopping.load(ordering: .relaxed) {
                guard Socket.wait(fd, for: Int16(POLLIN), milliseconds: 50) != 0 else { continue }
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { continue }
                Socket.setNonBlocking(connection)
                startThread { serve(connection) }
            }
        }
    }

    private func startThread(_ body: @escaping @Sendable () -> Void) {
        threads.enter()
        Thread { [threads] in
            body()
            threads.leave()
        }.start()
    }

    /// Stops accepting, lets `endingConnections` make the serving threads return, and waits for them all.
    func stop(endingConnections: () -> Void) async {
        stopping.store(true, ordering: .relaxed)
        endingConnections()
        await withCheckedContinuation { continuation in threads.notify(queue: .global()) { continuation.resume() } }
        close(fd)
    }
}
