/// Back-off between reconnect attempts: doubles from ``initial`` up to ``maximum``.
public struct ReconnectPolicy: Sendable, Hashable {
    /// First wait after a lost connection.
    public var initial: Duration
    /// Longest wait between attempts.
    public var maximum: Duration

    public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(30)) {
        self.initial = initial
        self.maximum = maximum
    }
}
