import Testing
@testable import WebSocketCodec

/// Decodes everything `bytes` holds, fed `chunk` bytes at a time.
func decodeAll(_ bytes: [UInt8], role: WebSocketRole = .client, chunk: Int = .max, maximumMessageSize: Int = 1 << 20)
    throws(WebSocketProtocolError) -> [WebSocketMessage]
{
    var decoder = WebSocketFrameDecoder(role: role, maximumMessageSize: maximumMessageSize)
    var messages: [WebSocketMessage] = []
    var offset = 0
    repeat {
        let end = min(bytes.count, offset + chunk)
        decoder.append(bytes[offset..<end])
        offset = end
        while let message = try decoder.nextMessage() { messages.append(message) }
    } while offset < bytes.count
    return messages
}

func encoded(_ role: WebSocketRole, _ body: (inout WebSocketFrameEncoder) -> Void) -> [UInt8] {
    var encoder = WebSocketFrameEncoder(role: role)
    body(&encoder)
    return Array(encoder.pendingBytes)
}

let hello = Array("Hello".utf8)
/// RFC 6455 section 5.7's masking key, 0x37 0xfa 0x21 0x3d.
let rfcKey: UInt32 = 0x37FA_213D

@Suite("RFC 6455 section 5.7's examples, both ways")
struct RFCExampleTests {
    @Test("a single-frame unmasked text message: 0x81 0x05 Hello")
    func unmaskedText() throws {
        let wire: [UInt8] = [0x81, 0x05] + hello
        #expect(encoded(.server) { $0.appendText("Hello") } == wire)
        #expect(try decodeAll(wire) == [.text("Hello")])
    }

    @Test("a single-frame masked text message: 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58")
    func maskedText() throws {
        let wire: [UInt8] = [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
        #expect(encoded(.client) { $0.appendText("Hello", maskingKey: rfcKey) } == wire)
        #expect(try decodeAll(wire, role: .server) == [.text("Hello")])
    }

    @Test("a fragmented unmasked text message: 0x01 0x03 Hel, 0x80 0x02 lo")
    func fragmentedText() throws {
        let wire: [UInt8] = [0x01, 0x03] + Array("Hel".utf8) + [0x80, 0x02] + Array("lo".utf8)
        let frames = encoded(.server) { encoder in
            Array("Hel".utf8).withUnsafeBytes { encoder.append(.text, payload: $0, fin: false) }
            Array("lo".utf8).withUnsafeBytes { encoder.append(.continuation, payload: $0) }
        }
        #expect(frames == wire)
        #expect(try decodeAll(wire) == [.text("Hello")])
    }

    @Test("an unmasked ping and a masked pong, each with Hello")
    func pingAndPong() throws {
        let ping: [UInt8] = [0x89, 0x05] + hello
        let pong: [UInt8] = [0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
        #expect(encoded(.server) { $0.appendPing(hello) } == ping)
        #expect(encoded(.client) { $0.appendPong(hello, maskingKey: rfcKey) } == pong)
        #expect(try decodeAll(ping) == [.ping(hello)])
        #expect(try decodeAll(pong, role: .server) == [.pong(hello)])
    }

    @Test("256 bytes in one unmasked binary frame: 0x82 0x7E 0x0100, then the payload")
    func sixteenBitLength() throws {
        let payload = (0..<256).map { UInt8($0 & 0xFF) }
        let wire: [UInt8] = [0x82, 0x7E, 0x01, 0x00] + payload
        #expect(encoded(.server) { encoder in payload.withUnsafeBytes { encoder.append(.binary, payload: $0) } } == wire)
        #expect(try decodeAll(wire) == [.binary(payload)])
    }

    @Test("64 KiB in one unmasked binary frame: 0x82 0x7F 0x0000000000010000, then the payload")
    func sixtyFourBitLength() throws {
        let payload = (0..<65536).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let wire: [UInt8] = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0] + payload
        #expect(encoded(.server) { encoder in payload.withUnsafeBytes { encoder.append(.binary, payload: $0) } } == wire)
        #expect(try decodeAll(wire) == [.binary(payload)])
    }
}

@Suite("The frame decoder: cuts, fragments, limits and protocol errors")
struct FrameDecoderTests {
    /// Messages of every length class, masked by the client, some fragmented with control frames between.
    static func mixedStream() -> (wire: [UInt8], messages: [WebSocketMessage]) {
        var encoder = WebSocketFrameEncoder(role: .client)
        var messages: [WebSocketMessage] = []
        for length in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let text = String(repeating: "ä", count: length / 2) + String(repeating: "x", count: length % 2)
            encoder.appendText(text)
            messages.append(.text(text))
        }
        Array("{\"a\":".utf8).withUnsafeBytes { encoder.append(.text, payload: $0, fin: false) }
        encoder.appendPing([1, 2, 3])
        messages.append(.ping([1, 2, 3]))
        Array("1}".utf8).withUnsafeBytes { encoder.append(.continuation, payload: $0, fin: false) }
        encoder.appendPong([])
        messages.append(.pong([]))
        [UInt8]().withUnsafeBytes { encoder.append(.continuation, payload: $0) }
        messages.append(.text("{\"a\":1}"))
        encoder.appendClose(.normalClosure, reason: "bye")
        messages.append(.close(code: .normalClosure, reason: "bye"))
        return (Array(encoder.pendingBytes), messages)
    }

    @Test("the same messages whether the bytes come at once, byte by byte or in odd cuts", arguments: [Int.max, 1, 3, 1000])
    func anyCut(chunk: Int) throws {
        let (wire, messages) = Self.mixedStream()
        #expect(try decodeAll(wire, role: .server, chunk: chunk) == messages)
    }

    @Test("reading from a socket straight into the decoder's buffer, a partial frame left each time")
    func readIntoBuffer() throws {
        let (wire, messages) = Self.mixedStream()
        var decoder = WebSocketFrameDecoder(role: .server)
        var offset = 0
        var decoded: [WebSocketMessage] = []
        while offset < wire.count {
            let read = decoder.readIntoBuffer(minimumCapacity: 4096) { space in
                let count = min(space.count, 4093, wire.count - offset)
                space.copyBytes(from: wire[offset..<(offset + count)])
                return count
            }
            offset += read
            while let message = try decoder.nextMessage() { decoded.append(message) }
        }
        #expect(decoded == messages)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test("a message over the limit fails with 1009 from its header, before its payload arrives")
    func oversized() throws {
        let header: [UInt8] = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x10, 0, 0]
        #expect(throws: WebSocketProtocolError.messageTooBig(limit: 1024)) {
            try decodeAll(header, maximumMessageSize: 1024)
        }
        #expect(WebSocketProtocolError.messageTooBig(limit: 1024).closeCode == .messageTooBig)
        // Fragments count together: 600 + 600 bytes exceed 1,000 at the second header (bytes 604-607).
        let part = [UInt8](repeating: 0x61, count: 600)
        let fragmented = encoded(.server) { encoder in
            part.withUnsafeBytes { encoder.append(.text, payload: $0, fin: false) }
            part.withUnsafeBytes { encoder.append(.continuation, payload: $0) }
        }
        #expect(throws: WebSocketProtocolError.messageTooBig(limit: 1000)) {
            try decodeAll(Array(fragmented.prefix(608)), maximumMessageSize: 1000)
        }
        #expect(try decodeAll(Array(fragmented.prefix(604)), maximumMessageSize: 1000).isEmpty)
        #expect(throws: WebSocketProtocolError.messageTooBig(limit: 1000)) {
            try decodeAll(fragmented, maximumMessageSize: 1000)
        }
        #expect(try decodeAll(fragmented, maximumMessageSize: 1200) == [.text(String(repeating: "a", count: 1200))])
    }

    @Test("text that is not UTF-8 fails with 1007, whole or cut between fragments in the middle of a character")
    func invalidUTF8() throws {
        #expect(throws: WebSocketProtocolError.invalidUTF8) { try decodeAll([0x81, 0x02, 0xC3, 0x28]) }
        #expect(throws: WebSocketProtocolError.invalidUTF8) { try decodeAll([0x01, 0x01, 0xED, 0x80, 0x02, 0xA0, 0x80]) }
        // A character cut between fragments is fine once it is whole: "ä" is C3 A4.
        #expect(try decodeAll([0x01, 0x01, 0xC3, 0x80, 0x01, 0xA4]) == [.text("ä")])
        #expect(WebSocketProtocolError.invalidUTF8.closeCode == .invalidFramePayloadData)
        // Binary messages are not checked.
        #expect(try decodeAll([0x82, 0x02, 0xC3, 0x28]) == [.binary([0xC3, 0x28])])
    }

    @Test("protocol errors, each with close code 1002", arguments: [
        ([0x91, 0x00], WebSocketProtocolError.reservedBitsSet),
        ([0x83, 0x00], .unknownOpcode(3)),
        ([0x8B, 0x00], .unknownOpcode(0xB)),
        ([0x81, 0x80, 1, 2, 3, 4], .wrongMasking(masked: true)),
        ([0x09, 0x00], .invalidControlFrame),
        ([0x89, 0x7E, 0x00, 0x7E], .invalidControlFrame),
        ([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0], .invalidLength),
        ([0x80, 0x01, 0x61], .unexpectedFragment(.continuation)),
        ([0x01, 0x01, 0x61, 0x81, 0x01, 0x62], .unexpectedFragment(.text)),
        ([0x88, 0x01, 0x03], .invalidClosePayload),
        ([0x88, 0x02, 0x03, 0xED], .invalidClosePayload),
        ([0x88, 0x02, 0x03, 0xEE], .invalidClosePayload),
        ([0x88, 0x02, 0x03, 0xE7], .invalidClosePayload),
        ([0x88, 0x02, 0x13, 0x88], .invalidClosePayload),
    ] as [([UInt8], WebSocketProtocolError)])
    func protocolErrors(wire: [UInt8], error: WebSocketProtocolError) {
        #expect(throws: error) { try decodeAll(wire) }
        #expect(error.closeCode == .protocolError)
    }

    @Test("a server fails a client's unmasked frame")
    func unmaskedFromClient() {
        #expect(throws: WebSocketProtocolError.wrongMasking(masked: false)) { try decodeAll([0x81, 0x00], role: .server) }
    }

    @Test("close frames: empty, a code, a code and a reason; 1012-1014 and 3000-4999 allowed")
    func closeFrames() throws {
        #expect(try decodeAll([0x88, 0x00]) == [.close(code: nil, reason: "")])
        #expect(try decodeAll([0x88, 0x02, 0x03, 0xF3]) == [.close(code: .internalError, reason: "")])
        #expect(try decodeAll([0x88, 0x02, 0x03, 0xF6]) == [.close(code: WebSocketCloseCode(rawValue: 1014), reason: "")])
        #expect(try decodeAll([0x88, 0x02, 0x0F, 0xA0]) == [.close(code: WebSocketCloseCode(rawValue: 4000), reason: "")])
        #expect(throws: WebSocketProtocolError.invalidUTF8) { try decodeAll([0x88, 0x04, 0x03, 0xE8, 0xC3, 0x28]) }
        let long = String(repeating: "é", count: 100)
        let frame = encoded(.server) { $0.appendClose(.normalClosure, reason: long) }
        #expect(frame.count == 2 + 125 - 1)
        #expect(try decodeAll(frame) == [.close(code: .normalClosure, reason: String(repeating: "é", count: 61))])
    }

    @Test("client frames are masked with a fresh key each time")
    func freshMasks() throws {
        var encoder = WebSocketFrameEncoder(role: .client)
        encoder.appendText("same")
        encoder.appendText("same")
        let wire = Array(encoder.pendingBytes)
        #expect(wire[1] & 0x80 != 0)
        #expect(wire[2..<6] != wire[12..<16])
        #expect(try decodeAll(wire, role: .server) == [.text("same"), .text("same")])
    }

    @Test("the encoder's buffer: consume what the socket took, the rest stays in order")
    func partialWrites() throws {
        var encoder = WebSocketFrameEncoder(role: .server)
        var written: [UInt8] = []
        for index in 0..<1000 {
            encoder.appendText("message \(index)")
            let take = min(encoder.pendingBytes.count, 7)
            written += encoder.pendingBytes.prefix(take)
            encoder.consume(take)
        }
        written += encoder.pendingBytes
        encoder.consume(encoder.pendingBytes.count)
        #expect(!encoder.hasPendingBytes)
        #expect(try decodeAll(written) == (0..<1000).map { .text("message \($0)") })
    }
}
