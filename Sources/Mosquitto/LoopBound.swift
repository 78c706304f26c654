/// A value that belongs to one event loop's thread, carried across other threads as an opaque handle.
///
/// In the spirit of swift-nio's `NIOLoopBound`: whoever holds one can pass it anywhere (into a job for the loop, a
/// `@Sendable` closure, a `Sendable` type), but can reach the value only on the loop's thread. The check is a
/// `precondition`, so it holds in release builds too; it costs an atomic load and a `pthread_equal`, which is why
/// it sits at the entry to a part of the work, never inside a loop over bytes or messages.
///
/// Keep mutable state in a class: the wrapper hands out the same reference on every access.
public struct LoopBound<Value>: @unchecked Sendable {
    // SAFETY: `stored` is reachable only through `value`, which traps unless the caller runs on `loop`'s thread
    // (or, after the loop ended, the one thread that drains its late jobs, which `inEventLoop` then names).
    private let stored: Value
    public let loop: MQTTEventLoop

    /// Binds a value nobody else holds (`sending`), so it may be made on any thread and used only on the loop's.
    public init(_ value: sending Value, loop: MQTTEventLoop) {
        stored = value
        self.loop = loop
    }

    /// The value; traps when the caller does not run on the loop's thread.
    public var value: Value {
        loop.preconditionInEventLoop()
        return stored
    }
}
