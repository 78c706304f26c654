/// One whole message or control frame, as the decoder delivers it.
public enum WebSocketMessage: Equatable, Sendable {
    case text(String)
    case binary([UInt8])
    case ping([UInt8])
    case pong([UInt8])
    /// A close frame; `code` is nil when the frame carried none (reported as 1005 by RFC 6455 section 7.1.5).
    case close(code: WebSocketCloseCode?, reason: String)
}

/// A peer broke RFC 6455: the connection must be failed with ``closeCode`` (section 7.1.7), and the decoder
/// must not be used again.
public enum WebSocketProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// RSV1-3 set although no extension was negotiated (section 5.2).
    case reservedBitsSet
    case unknownOpcode(UInt8)
    /// A server masked a frame, or a client did not (section 5.1).
    case wrongMasking(masked: Bool)
    /// A control frame with FIN clear or more than 125 bytes of payload (section 5.5).
    case invalidControlFrame
    /// A 64-bit length with its most significant bit set (section 5.2).
    case invalidLength
    /// A continuation frame with no message started, or a new data frame before the last one finished
    /// (section 5.4).
    case unexpectedFragment(WebSocketOpcode)
    /// A message (all fragments together) longer than the decoder's limit; found from the frame header, before
    /// the payload is buffered.
    case messageTooBig(limit: Int)
    /// A text message, or a close reason, that is not UTF-8 (section 8.1).
    case invalidUTF8
    /// A close frame with a one-byte payload or a code not allowed on the wire (section 7.4).
    case invalidClosePayload

    /// The code to close with.
    public var closeCode: WebSocketCloseCode {
        switch self {
        case .messageTooBig: .messageTooBig
        case .invalidUTF8: .invalidFramePayloadData
        default: .protocolError
        }
    }

    public var description: String {
        switch self {
        case .reservedBitsSet: "reserved bits set"
        case .unknownOpcode(let opcode): "unknown opcode \(opcode)"
        case .wrongMasking(let masked): masked ? "masked frame from the server" : "unmasked frame from the client"
        case .invalidControlFrame: "fragmented or oversized control frame"
        case .invalidLength: "64-bit length with its high bit set"
        case .unexpectedFragment(let opcode): "unexpected \(opcode) frame in the fragment sequence"
        case .messageTooBig(let limit): "message longer than \(limit) bytes"
        case .invalidUTF8: "text that is not UTF-8"
        case .invalidClosePayload: "invalid close frame payload"
        }
    }
}

/// Decodes frames incrementally from a growing byte buffer (RFC 6455 section 5): bytes arrive in any cut,
/// byte by byte included, and messages come out whole.
///
/// The socket reads straight into the decoder's buffer (``readIntoBuffer(minimumCapacity:_:)``); an unfragmented
/// message is taken from that buffer with one copy (into its `String` or array), a masked one unmasked in place.
/// Only fragmented messages are gathered into a second buffer first. Control frames may arrive between
/// fragments (section 5.4) and come out at once.
public struct WebSocketFrameDecoder: Sendable {
    public let role: WebSocketRole
    /// The longest message (all its fragments together) the decoder accepts.
    public let maximumMessageSize: Int
    private var buffer: [UInt8] = []
    /// Bytes before it are consumed.
    private var readIndex = 0
    /// Bytes from it on are free space.
    private var writeIndex = 0
    private var fragments: [UInt8] = []
    private var fragmentedOpcode: WebSocketOpcode?

    public init(role: WebSocketRole, maximumMessageSize: Int = 1 << 20) {
        self.role = role
        self.maximumMessageSize = maximumMessageSize
    }

    /// Bytes received and not yet decoded.
    public var bufferedByteCount: Int { writeIndex - readIndex }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        reserve(bytes.count)
        buffer.replaceSubrange(writeIndex..<(writeIndex + bytes.count), with: bytes)
        writeIndex += bytes.count
    }

    /// Lets `read` fill free space at the end of the buffer (e.g. with `read(2)`) and returns what it returns;
    /// a positive result counts the bytes it wrote.
    public mutating func readIntoBuffer(minimumCapacity: Int = 16 * 1024,
                                        _ read: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        reserve(minimumCapacity)
        let start = writeIndex
        let result = buffer.withUnsafeMutableBytes { read(UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
        if result > 0 { writeIndex += result }
        return result
    }

    private mutating func reserve(_ count: Int) {
        if readIndex == writeIndex {
            readIndex = 0
            writeIndex = 0
        }
        guard buffer.count - writeIndex < count else { return }
        if readIndex > 0 {
            // Only a partial frame is left: move it to the front, then the free space is all at the end.
            buffer.withUnsafeMutableBytes { bytes in
                bytes.baseAddress!.copyMemory(from: bytes.baseAddress! + readIndex, byteCount: writeIndex - readIndex)
            }
            writeIndex -= readIndex
            readIndex = 0
        }
        if buffer.count - writeIndex < count {
            buffer.append(contentsOf: repeatElement(0, count: max(count - (buffer.count - writeIndex), buffer.count)))
        }
    }

    /// The next whole message or control frame, or nil when the buffer holds no complete one yet.
    public mutating func nextMessage() throws(WebSocketProtocolError) -> WebSocketMessage? {
        while true {
            guard let header = try parseHeader() else { return nil }
            let payloadStart = readIndex + header.headerLength
            let payloadEnd = payloadStart + header.payloadLength
            guard payloadEnd <= writeIndex else { return nil }
            if let key = header.maskingKey {
                buffer.withUnsafeMutableBufferPointer { WebSocketMask.apply(key, to: $0[payloadStart..<payloadEnd]) }
            }
            readIndex = payloadEnd
            let payload = buffer[payloadStart..<payloadEnd]
            switch header.opcode {
            case .ping: return .ping(Array(payload))
            case .pong: return .pong(Array(payload))
            case .close: return try Self.closeMessage(payload)
            case .text, .binary:
                if header.fin { return try Self.message(header.opcode, payload) }
                fragmentedOpcode = header.opcode
                fragments.removeAll(keepingCapacity: true)
                fragments.append(contentsOf: payload)
            case .continuation:
                fragments.append(contentsOf: payload)
                guard header.fin, let opcode = fragmentedOpcode else { continue }
                fragmentedOpcode = nil
                defer { fragments.removeAll(keepingCapacity: fragments.capacity <= 64 * 1024) }
                return try Self.message(opcode, fragments[...])
            }
        }
    }

    private static func message(_ opcode: WebSocketOpcode, _ payload: ArraySlice<UInt8>)
        throws(WebSocketProtocolError) -> WebSocketMessage
    {
        guard opcode == .text else { return .binary(Array(payload)) }
        guard let text = String(validating: payload, as: UTF8.self) else { throw .invalidUTF8 }
        return .text(text)
    }

    private static func closeMessage(_ payload: ArraySlice<UInt8>) throws(WebSocketProtocolError) -> WebSocketMessage {
        guard !payload.isEmpty else { return .close(code: nil, reason: "") }
        guard payload.count >= 2 else { throw .invalidClosePayload }
        let code = WebSocketCloseCode(rawValue: UInt16(payload[payload.startIndex]) << 8 | UInt16(payload[payload.startIndex + 1]))
        guard code.isAllowedOnTheWire else { throw .invalidClosePayload }
        guard let reason = String(validating: payload.dropFirst(2), as: UTF8.self) else { throw .invalidUTF8 }
        return .close(code: code, reason: reason)
    }

    private struct FrameHeader {
        var fin: Bool
        var opcode: WebSocketOpcode
        var headerLength: Int
        var payloadLength: Int
        var maskingKey: UInt32?
    }

    /// The header at `readIndex`, checked against everything that does not need the payload; nil while
    /// incomplete.
    private func parseHeader() throws(WebSocketProtocolError) -> FrameHeader? {
        let available = writeIndex - readIndex
        guard available >= 2 else { return nil }
        let first = buffer[readIndex]
        let second = buffer[readIndex + 1]
        guard first & 0x70 == 0 else { throw .reservedBitsSet }
        guard let opcode = WebSocketOpcode(rawValue: first & 0x0F) else { throw .unknownOpcode(first & 0x0F) }
        let fin = first & 0x80 != 0
        let masked = second & 0x80 != 0
        guard masked == (role == .server) else { throw .wrongMasking(masked: masked) }
        let shortLength = Int(second & 0x7F)
        if opcode.isControl {
            guard fin, shortLength <= 125 else { throw .invalidControlFrame }
        } else if (opcode == .continuation) != (fragmentedOpcode != nil) {
            throw .unexpectedFragment(opcode)
        }
        let lengthBytes = shortLength == 126 ? 2 : shortLength == 127 ? 8 : 0
        let headerLength = 2 + lengthBytes + (masked ? 4 : 0)
        guard available >= 2 + lengthBytes else { return nil }
        var length = UInt64(shortLength)
        if lengthBytes > 0 {
            length = 0
            for index in 0..<lengthBytes { length = length << 8 | UInt64(buffer[readIndex + 2 + index]) }
            guard length >> 63 == 0 else { throw .invalidLength }
        }
        let soFar = opcode == .continuation ? fragments.count : 0
        guard length <= UInt64(maximumMessageSize - soFar) else { throw .messageTooBig(limit: maximumMessageSize) }
        guard available >= headerLength else { return nil }
        var key: UInt32?
        if masked {
            key = buffer[(readIndex + headerLength - 4)..<(readIndex + headerLength)].reduce(0) { $0 << 8 | UInt32($1) }
        }
        return FrameHeader(fin: fin, opcode: opcode, headerLength: headerLength, payloadLength: Int(length),
                           maskingKey: key)
    }
}
