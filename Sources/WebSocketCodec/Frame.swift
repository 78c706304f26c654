/// Which end of the connection a codec serves: RFC 6455 section 5.1 makes clients mask every frame and servers
/// mask none, and each side must fail a connection whose peer breaks that.
public enum WebSocketRole: Sendable {
    case client
    case server
}

/// RFC 6455 section 5.2's opcodes.
public enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    /// Control frames (close, ping, pong) have the opcode's high bit set (RFC 6455 section 5.5).
    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// A close frame's status code (RFC 6455 section 7.4 and IANA's WebSocket Close Code Number Registry).
public struct WebSocketCloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Ditto closes with it when a session's JWT expires and after a `declared-acks` conflict.
    public static let normalClosure = WebSocketCloseCode(rawValue: 1000)
    public static let goingAway = WebSocketCloseCode(rawValue: 1001)
    public static let protocolError = WebSocketCloseCode(rawValue: 1002)
    public static let unsupportedData = WebSocketCloseCode(rawValue: 1003)
    /// Only reported locally: a close frame without a code (RFC 6455 section 7.1.5); never on the wire.
    public static let noStatusReceived = WebSocketCloseCode(rawValue: 1005)
    /// Only reported locally: the connection ended without a close frame; never on the wire.
    public static let abnormalClosure = WebSocketCloseCode(rawValue: 1006)
    public static let invalidFramePayloadData = WebSocketCloseCode(rawValue: 1007)
    public static let policyViolation = WebSocketCloseCode(rawValue: 1008)
    public static let messageTooBig = WebSocketCloseCode(rawValue: 1009)
    public static let mandatoryExtension = WebSocketCloseCode(rawValue: 1010)
    /// Ditto closes with it for malformed control-message parameters and when a gateway restarts.
    public static let internalError = WebSocketCloseCode(rawValue: 1011)

    /// Whether a close frame may carry this code: 1000-1003, 1007-1014 (1012-1014 registered with IANA after
    /// the RFC), and 3000-4999 for libraries and applications. 1004-1006 and 1015 are reserved or local only.
    public var isAllowedOnTheWire: Bool {
        switch rawValue {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }

    public var description: String { String(rawValue) }
}

/// Encodes frames into one reusable buffer (RFC 6455 section 5.2): the event loop appends frames, writes
/// ``pendingBytes`` to the socket as far as it takes them, and calls ``consume(_:)`` with what was written.
/// The buffer keeps its capacity, so a steady stream of frames allocates nothing.
public struct WebSocketFrameEncoder: Sendable {
    public let role: WebSocketRole
    private var buffer: [UInt8] = []
    private var start = 0
    private var maskingKeys: MaskingKeyGenerator

    public init(role: WebSocketRole) {
        self.role = role
        maskingKeys = MaskingKeyGenerator()
    }

    /// What is encoded and not yet written.
    public var pendingBytes: ArraySlice<UInt8> { buffer[start...] }
    public var hasPendingBytes: Bool { start < buffer.count }

    /// Drops the first `count` pending bytes: the socket took them.
    public mutating func consume(_ count: Int) {
        precondition(count >= 0 && count <= buffer.count - start, "consumed more than pending")
        start += count
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start >= 64 * 1024 && start >= buffer.count / 2 {
            // A slow socket left a tail behind many written frames: move it down instead of growing for ever.
            buffer.removeFirst(start)
            start = 0
        }
    }

    /// Appends a text frame (one whole message): the string's UTF-8 is copied once, into the buffer.
    public mutating func appendText(_ text: String, maskingKey: UInt32? = nil) {
        var text = text
        text.withUTF8 { append(.text, payload: UnsafeRawBufferPointer($0), maskingKey: maskingKey) }
    }

    public mutating func appendPing(_ payload: [UInt8] = [], maskingKey: UInt32? = nil) {
        payload.withUnsafeBytes { append(.ping, payload: $0, maskingKey: maskingKey) }
    }

    public mutating func appendPong(_ payload: [UInt8] = [], maskingKey: UInt32? = nil) {
        payload.withUnsafeBytes { append(.pong, payload: $0, maskingKey: maskingKey) }
    }

    /// A close frame with a code and a reason; the reason is cut at a character boundary to fit a control
    /// frame's 125 bytes (RFC 6455 section 5.5).
    public mutating func appendClose(_ code: WebSocketCloseCode?, reason: String = "", maskingKey: UInt32? = nil) {
        var payload: [UInt8] = []
        if let code {
            payload = [UInt8(code.rawValue >> 8), UInt8(code.rawValue & 0xFF)]
            var reasonBytes = 0
            for character in reason {
                let length = character.utf8.count
                guard reasonBytes + length <= 123 else { break }
                payload.append(contentsOf: character.utf8)
                reasonBytes += length
            }
        }
        payload.withUnsafeBytes { append(.close, payload: $0, maskingKey: maskingKey) }
    }

    /// Appends one frame. A client masks with `maskingKey` or, without one, a fresh key per frame; a server
    /// never masks. `fin: false` starts or continues a fragmented message (control frames cannot be fragmented).
    public mutating func append(_ opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer, fin: Bool = true,
                                maskingKey: UInt32? = nil) {
        precondition(!opcode.isControl || (fin && payload.count <= 125), "control frames are unfragmented, at most 125 bytes")
        let masked = role == .client
        buffer.append((fin ? 0x80 : 0) | opcode.rawValue)
        let maskBit: UInt8 = masked ? 0x80 : 0
        switch payload.count {
        case 0...125:
            buffer.append(maskBit | UInt8(payload.count))
        case 126...0xFFFF:
            buffer.append(maskBit | 126)
            buffer.append(UInt8(payload.count >> 8))
            buffer.append(UInt8(payload.count & 0xFF))
        default:
            buffer.append(maskBit | 127)
            let length = UInt64(payload.count)
            for shift in stride(from: 56, through: 0, by: -8) { buffer.append(UInt8(truncatingIfNeeded: length >> UInt64(shift))) }
        }
        // Typed, so that the append is one copy rather than a walk over the bytes.
        let payloadBytes = UnsafeBufferPointer(start: payload.baseAddress?.assumingMemoryBound(to: UInt8.self), count: payload.count)
        guard masked else {
            buffer.append(contentsOf: payloadBytes)
            return
        }
        let key = maskingKey ?? maskingKeys.next()
        for shift in stride(from: 24, through: 0, by: -8) { buffer.append(UInt8(truncatingIfNeeded: key >> UInt32(shift))) }
        let payloadStart = buffer.count
        buffer.append(contentsOf: payloadBytes)
        buffer.withUnsafeMutableBufferPointer { WebSocketMask.apply(key, to: $0[payloadStart...]) }
    }
}

/// RFC 6455 section 5.3: byte i of the payload XOR byte i mod 4 of the key; the same operation masks and unmasks.
enum WebSocketMask {
    /// `key` holds the four key bytes in wire order, the first in its high byte. Eight bytes at a time: masking
    /// touches every payload byte of every client frame (and every frame a server reads).
    static func apply(_ key: UInt32, to bytes: Slice<UnsafeMutableBufferPointer<UInt8>>) {
        guard !bytes.isEmpty, let base = bytes.base.baseAddress else { return }
        let start = UnsafeMutableRawPointer(base + bytes.startIndex)
        // The key's bytes in memory order, twice: `bigEndian` puts its first byte first on either byte order.
        let half = UInt64(key.bigEndian)
        let mask = half | half << 32
        var offset = 0
        while offset + 8 <= bytes.count {
            let word = start.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            start.storeBytes(of: word ^ mask, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < bytes.count {
            start.storeBytes(of: start.load(fromByteOffset: offset, as: UInt8.self)
                                 ^ UInt8(truncatingIfNeeded: key >> UInt32(24 - 8 * (offset & 3))),
                             toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }
}

/// Masking keys for client frames: xoshiro128** seeded from the system's random source.
///
/// RFC 6455 section 10.3 asks for keys a script in a browser cannot predict, so that it cannot steer the bytes an
/// intermediary sees. The bridge runs no third-party script, and a system call per frame (what
/// `SystemRandomNumberGenerator` costs on Linux) would sit on the per-message path; the seed comes from the
/// system once per connection.
struct MaskingKeyGenerator: Sendable {
    private var state: (UInt32, UInt32, UInt32, UInt32)

    init() {
        var system = SystemRandomNumberGenerator()
        repeat {
            state = (system.next(), system.next(), system.next(), system.next())
        } while state == (0, 0, 0, 0)
    }

    mutating func next() -> UInt32 {
        let result = rotateLeft(state.1 &* 5, 7) &* 9
        let t = state.1 << 9
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotateLeft(state.3, 11)
        return result
    }

    private func rotateLeft(_ value: UInt32, _ count: UInt32) -> UInt32 { value << count | value >> (32 - count) }
}
