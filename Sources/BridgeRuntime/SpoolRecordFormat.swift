import Glibc
import Mosquitto
import MQTT

/// One message on its way to the Ditto-side broker, as the spool stores it.
struct OutboundRecord {
    var sequence: UInt64
    /// Milliseconds since 1970 when the bridge took the message (for `max-age`); 0 in the memory queue, which has
    /// no `max-age`.
    var created: Int64
    var topic: String
    var payload: [UInt8]
    var properties: PublishProperties
}

extension OutboundRecord {
    /// The record as a segment stores it: length and checksum of the body, then the body.
    func frame() -> ByteWriter {
        // Length and checksum first, filled in once the body behind them is written: one buffer, no copy.
        var frame = ByteWriter()
        frame.data.reserveCapacity(64 + topic.utf8.count + payload.count)
        frame.uint64(0)
        frame.uint64(sequence)
        frame.int64(created)
        frame.string(topic)
        frame.properties(properties)
        frame.bytes(payload)
        let bodyLength = frame.data.count - 8
        let checksum = frame.data.withUnsafeBufferPointer { CRC32.checksum(UnsafeBufferPointer(rebasing: $0[8...])) }
        frame.data.withUnsafeMutableBytes { header in
            header.storeBytes(of: UInt32(bodyLength).littleEndian, toByteOffset: 0, as: UInt32.self)
            header.storeBytes(of: checksum.littleEndian, toByteOffset: 4, as: UInt32.self)
        }
        return frame
    }

    /// A record from its body (as ``SegmentFile/readRecordBytes(fd:offset:)`` returns it); nil when malformed.
    init?(body: [UInt8]) {
        var reader = ByteReader(bytes: body)
        guard let sequence = reader.uint64(), let created = reader.int64(), let topic = reader.string(),
              let properties = reader.properties(), let payload = reader.bytes()
        else { return nil }
        self.init(sequence: sequence, created: created, topic: topic, payload: payload, properties: properties)
    }
}

/// Reading a segment file's records; the cursor file's 16 bytes.
enum SegmentFile {
    /// The cursor as the cursor file stores it: the sequence number, its checksum, 4 bytes of zeros.
    static func cursorBytes(_ sequence: UInt64) -> [UInt8] {
        var writer = ByteWriter()
        writer.uint64(sequence)
        let checksum = CRC32.checksum(writer.data)
        writer.uint32(checksum)
        writer.uint32(0)
        return writer.data
    }

    /// The cursor from the cursor file's 16 bytes; nil when its checksum does not hold.
    static func cursor(from bytes: [UInt8]) -> UInt64? {
        var reader = ByteReader(bytes: Array(bytes[0..<8]))
        guard let value = reader.uint64() else { return nil }
        let stored = UInt32(bytes[8]) | UInt32(bytes[9]) << 8 | UInt32(bytes[10]) << 16 | UInt32(bytes[11]) << 24
        return CRC32.checksum(Array(bytes[0..<8])) == stored ? value : nil
    }

    /// Walks a segment's records; returns the last valid sequence number and the valid length.
    static func scan(path: String, first: UInt64) -> (UInt64, Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return (first &- 1, 0) }
        defer { close(fd) }
        var offset = 0
        var last = first &- 1
        while let (sequence, length) = readHeaderAndCheck(fd: fd, offset: offset) {
            last = sequence
            offset += length
        }
        return (last, offset)
    }

    static func fileSize(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    /// Reads and checks the record at `offset`: its sequence number and total length, or nil at the end or at
    /// a damaged record.
    static func readHeaderAndCheck(fd: Int32, offset: Int) -> (UInt64, Int)? {
        guard let bytes = readRecordBytes(fd: fd, offset: offset) else { return nil }
        var reader = ByteReader(bytes: bytes)
        guard let sequence = reader.uint64() else { return nil }
        return (sequence, 8 + bytes.count)
    }

    /// The body of the record at `offset` if it is whole and its checksum holds.
    static func readRecordBytes(fd: Int32, offset: Int) -> [UInt8]? {
        var header = [UInt8](repeating: 0, count: 8)
        guard pread(fd, &header, 8, off_t(offset)) == 8 else { return nil }
        let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
        let checksum = UInt32(header[4]) | UInt32(header[5]) << 8 | UInt32(header[6]) << 16 | UInt32(header[7]) << 24
        guard length >= 16, length <= 300 << 20 else { return nil }
        var body = [UInt8](repeating: 0, count: length)
        guard pread(fd, &body, length, off_t(offset + 8)) == length, CRC32.checksum(body) == checksum else { return nil }
        return body
    }
}

// MARK: encoding

struct ByteWriter {
    var data: [UInt8] = []

    mutating func uint32(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { data.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    mutating func uint64(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { data.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    mutating func int64(_ value: Int64) { uint64(UInt64(bitPattern: value)) }

    mutating func bytes(_ value: [UInt8]) {
        uint32(UInt32(value.count))
        data += value
    }

    mutating func string(_ value: String) {
        uint32(UInt32(value.utf8.count))
        data.append(contentsOf: value.utf8)
    }

    mutating func optional<T>(_ value: T?, _ write: (inout ByteWriter, T) -> Void) {
        if let value {
            data.append(1)
            write(&self, value)
        } else {
            data.append(0)
        }
    }

    mutating func properties(_ properties: PublishProperties) {
        optional(properties.payloadFormatIndicator) { $0.data.append($1) }
        optional(properties.messageExpiryInterval) { $0.uint32($1) }
        optional(properties.contentType) { $0.string($1) }
        optional(properties.responseTopic) { $0.string($1) }
        optional(properties.correlationData) { $0.bytes($1) }
        uint32(UInt32(properties.userProperties.count))
        for property in properties.userProperties {
            string(property.name)
            string(property.value)
        }
    }
}

struct ByteReader {
    let buffer: [UInt8]
    var offset = 0

    init(bytes: [UInt8]) { self.buffer = bytes }

    mutating func uint8() -> UInt8? {
        guard offset < buffer.count else { return nil }
        defer { offset += 1 }
        return buffer[offset]
    }

    mutating func uint32() -> UInt32? {
        guard offset + 4 <= buffer.count else { return nil }
        var value: UInt32 = 0
        for index in 0..<4 { value |= UInt32(buffer[offset + index]) << UInt32(8 * index) }
        offset += 4
        return value
    }

    mutating func uint64() -> UInt64? {
        guard offset + 8 <= buffer.count else { return nil }
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(buffer[offset + index]) << UInt64(8 * index) }
        offset += 8
        return value
    }

    mutating func int64() -> Int64? { uint64().map { Int64(bitPattern: $0) } }

    mutating func bytes() -> [UInt8]? {
        guard let count = uint32().map(Int.init), offset + count <= buffer.count else { return nil }
        defer { offset += count }
        return Array(buffer[offset..<offset + count])
    }

    mutating func string() -> String? { bytes().map { String(decoding: $0, as: UTF8.self) } }

    /// nil inside means absent; the outer nil means malformed.
    mutating func optional<T>(_ read: (inout ByteReader) -> T?) -> T?? {
        guard let flag = uint8() else { return nil }
        if flag == 0 { return .some(nil) }
        guard let value = read(&self) else { return nil }
        return .some(value)
    }

    mutating func properties() -> PublishProperties? {
        var properties = PublishProperties()
        guard let indicator = optional({ $0.uint8() }), let expiry = optional({ $0.uint32() }),
              let contentType = optional({ $0.string() }), let responseTopic = optional({ $0.string() }),
              let correlationData = optional({ $0.bytes() }), let count = uint32()
        else { return nil }
        properties.payloadFormatIndicator = indicator
        properties.messageExpiryInterval = expiry
        properties.contentType = contentType
        properties.responseTopic = responseTopic
        properties.correlationData = correlationData
        for _ in 0..<count {
            guard let name = string(), let value = string() else { return nil }
            properties.userProperties.append(UserProperty(name: name, value: value))
        }
        return properties
    }
}

/// CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, as zlib's `crc32`), the checksum every spool record and
/// the cursor carry, for torn or damaged records. Slicing-by-8: eight table lookups per eight bytes instead of one
/// lookup per byte; with the spool on it ran for every message and took 6.5 % of the bridge's CPU one byte at a time.
enum CRC32 {
    /// Table `k` (at `k * 256`) advances a byte through `k` further zero bytes.
    private static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for index in 0..<256 {
            var value = UInt32(index)
            for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
            tables[index] = value
        }
        for index in 0..<256 {
            for k in 1..<8 {
                let previous = tables[(k - 1) * 256 + index]
                tables[k * 256 + index] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { checksum($0) }
    }

    static func checksum(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        tables.withUnsafeBufferPointer { t in
            var crc: UInt32 = 0xFFFF_FFFF
            guard let base = bytes.baseAddress else { return 0 }
            let count = bytes.count
            var i = 0
            while count &- i >= 8 {
                let one = UnsafeRawPointer(base + i).loadUnaligned(as: UInt32.self).littleEndian ^ crc
                let two = UnsafeRawPointer(base + i + 4).loadUnaligned(as: UInt32.self).littleEndian
                crc = t[7 * 256 + Int(one & 0xFF)] ^ t[6 * 256 + Int((one >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((one >> 16) & 0xFF)] ^ t[4 * 256 + Int(one >> 24)]
                    ^ t[3 * 256 + Int(two & 0xFF)] ^ t[2 * 256 + Int((two >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((two >> 16) & 0xFF)] ^ t[Int(two >> 24)]
                i &+= 8
            }
            while i < count {
                crc = t[Int((crc ^ UInt32(base[i])) & 0xFF)] ^ (crc >> 8)
                i &+= 1
            }
            return crc ^ 0xFFFF_FFFF
        }
    }
}
