import BridgeConfig
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Dispatch
import Glibc
import Logging
import MQTT
import Mosquitto
import DequeModule

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

/// The uplink's store-and-forward queue: append-only segment files, a cursor moved by Ditto's acknowledgements.
///
/// Records are appended before they are sent (``append(topic:payload:properties:)``), handed out in order
/// (``nextToSend()``), and acknowledged in any order (``acknowledge(_:)``); the cursor is the highest sequence
/// number up to which everything was acknowledged. After a restart everything past the cursor is handed out
/// again (at-least-once: what was acknowledged after the last cursor write is sent twice). A torn record at the
/// end of the last segment (a crash mid-write) is cut off.
///
/// Not thread-safe: the data plane uses it on its event loop's thread only.
final class Spool {
    struct Segment {
        var firstSequence: UInt64
        /// Last record's sequence number; `firstSequence - 1` while empty.
        var lastSequence: UInt64
        var path: String
        var size: Int
    }

    enum Failure: Error, CustomStringConvertible {
        case io(String, Int32)
        var description: String {
            switch self {
            case .io(let what, let code): "\(what): \(String(cString: strerror(code)))"
            }
        }
    }

    let settings: SpoolSettings
    private let logger: Logger
    private var segments: [Segment] = []
    private var writeFD: Int32 = -1
    private var cursorFD: Int32 = -1
    /// The next sequence number ``append`` assigns.
    private(set) var nextSequence: UInt64 = 1
    /// Everything up to here is acknowledged.
    private(set) var ackedThrough: UInt64 = 0
    /// The next sequence number ``nextToSend()`` hands out.
    private(set) var sendSequence: UInt64 = 1
    private var readSegment = 0
    private var readOffset = 0
    private var readFD: Int32 = -1
    private var readFDPath = ""
    private var ackedAhead = Set<UInt64>()
    /// Flushes running on another thread (``flushInBackground(_:)``).
    private let backgroundFlushes = DispatchGroup()
    /// Records appended and not yet handed out, newest last, so that a short backlog is never read back from
    /// the disk; bounded (older ones are read from their segment when their turn comes).
    private var recent = Deque<(record: OutboundRecord, length: Int)>()
    /// Records handed out and not yet acknowledged (front trimmed as the cursor passes), in send order: the
    /// oldest unacknowledged record's age without reading the disk. Bounded by the publishes in flight.
    private var handedOut = Deque<(sequence: UInt64, created: Int64)>()
    /// Where ``oldestAge`` found the oldest unacknowledged record last time it had to read the disk, so the
    /// next look starts there instead of at the segment's start.
    private var ageScan: (path: String, offset: Int)?
    private var recentBytes = 0
    private static let recentLimit = (count: 8_192, bytes: 8 << 20)
    private(set) var totalBytes = 0
    private(set) var cursorDirty = false
    private(set) var dataDirty = false
    /// Records skipped because of `max-age` since the last ``takeExpired()``.
    private(set) var expired = 0

    /// Opens (creating when missing) the spool directory and recovers what an earlier run left.
    init(settings: SpoolSettings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        try FileManager.default.createDirectory(atPath: settings.directory, withIntermediateDirectories: true)
        cursorFD = open(settings.directory + "/cursor", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard cursorFD >= 0 else { throw Failure.io("cannot open \(settings.directory)/cursor", errno) }
        try recover()
    }

    deinit {
        if cursorDirty { persistCursor() }
        for fd in [writeFD, cursorFD, readFD] where fd >= 0 { close(fd) }
    }

    /// Appended and not yet handed out.
    var backlog: Int { Int(nextSequence - sendSequence) }
    /// Appended and not yet acknowledged.
    var unacknowledged: Int { Int(nextSequence - 1 - ackedThrough) }
    var isFull: Bool { totalBytes >= settings.maxSize }
    /// Below this the device side may be read again after the spool was full.
    var hasRoom: Bool { totalBytes < settings.maxSize - settings.maxSize / 10 }

    // MARK: recovery

    private func recover() throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: settings.directory)) ?? []
        let segmentNames = names.filter { $0.hasSuffix(".seg") }.compactMap { name -> (UInt64, String)? in
            UInt64(name.dropLast(4)).map { ($0, name) }
        }.sorted { $0.0 < $1.0 }
        let cursor = readCursor()
        for (index, (first, name)) in segmentNames.enumerated() {
            let path = settings.directory + "/" + name
            let isLast = index == segmentNames.count - 1
            var segment = Segment(firstSequence: first, lastSequence: first &- 1, path: path, size: 0)
            let (last, validSize) = scan(path: path, first: first)
            segment.lastSequence = last
            segment.size = validSize
            let actualSize = fileSize(path)
            if validSize < actualSize {
                if isLast {
                    logger.warning("spool: cutting a torn record off the last segment", metadata: [
                        "spool.segment": "\(path)", "spool.bytes.dropped": "\(actualSize - validSize)",
                    ])
                    truncate(path, off_t(validSize))
                } else {
                    logger.error("spool: a segment is damaged; its tail is skipped", metadata: [
                        "spool.segment": "\(path)", "spool.bytes.skipped": "\(actualSize - validSize)",
                    ])
                }
            }
            segments.append(segment)
        }
        if let last = segments.last {
            nextSequence = max(last.lastSequence &+ 1, last.firstSequence)
        }
        let oldest = segments.first?.firstSequence ?? nextSequence
        ackedThrough = max(cursor ?? 0, oldest &- 1)
        if ackedThrough >= nextSequence { ackedThrough = nextSequence - 1 }
        sendSequence = ackedThrough + 1
        deleteAcknowledgedSegments()
        totalBytes = segments.reduce(0) { $0 + $1.size }
        try positionReader(at: sendSequence)
        if backlog > 0 {
            logger.notice("spool: messages from an earlier run go to Ditto first", metadata: [
                "spool.messages": "\(backlog)", "spool.bytes": "\(totalBytes)",
            ])
        }
    }

    /// Walks a segment's records; returns the last valid sequence number and the valid length.
    private func scan(path: String, first: UInt64) -> (UInt64, Int) {
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

    private func fileSize(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    /// Reads and checks the record at `offset`: its sequence number and total length, or nil at the end or at
    /// a damaged record.
    private func readHeaderAndCheck(fd: Int32, offset: Int) -> (UInt64, Int)? {
        guard let bytes = readRecordBytes(fd: fd, offset: offset) else { return nil }
        var reader = ByteReader(bytes: bytes)
        guard let sequence = reader.uint64() else { return nil }
        return (sequence, 8 + bytes.count)
    }

    /// The body of the record at `offset` if it is whole and its checksum holds.
    private func readRecordBytes(fd: Int32, offset: Int) -> [UInt8]? {
        var header = [UInt8](repeating: 0, count: 8)
        guard pread(fd, &header, 8, off_t(offset)) == 8 else { return nil }
        let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
        let checksum = UInt32(header[4]) | UInt32(header[5]) << 8 | UInt32(header[6]) << 16 | UInt32(header[7]) << 24
        guard length >= 16, length <= 300 << 20 else { return nil }
        var body = [UInt8](repeating: 0, count: length)
        guard pread(fd, &body, length, off_t(offset + 8)) == length, CRC32.checksum(body) == checksum else { return nil }
        return body
    }

    private func readCursor() -> UInt64? {
        var bytes = [UInt8](repeating: 0, count: 16)
        guard pread(cursorFD, &bytes, 16, 0) == 16 else { return nil }
        var reader = ByteReader(bytes: Array(bytes[0..<8]))
        guard let value = reader.uint64() else { return nil }
        let stored = UInt32(bytes[8]) | UInt32(bytes[9]) << 8 | UInt32(bytes[10]) << 16 | UInt32(bytes[11]) << 24
        return CRC32.checksum(Array(bytes[0..<8])) == stored ? value : nil
    }

    // MARK: writing

    /// Appends a record; it counts as taken once this returns.
    @discardableResult
    func append(topic: String, payload: [UInt8], properties: PublishProperties) throws -> OutboundRecord {
        let record = OutboundRecord(sequence: nextSequence, created: Self.nowMillis(), topic: topic, payload: payload,
                                    properties: properties)
        // Length and checksum first, filled in once the body behind them is written: one buffer, no copy.
        var frame = ByteWriter()
        frame.data.reserveCapacity(64 + topic.utf8.count + payload.count)
        frame.uint64(0)
        frame.uint64(record.sequence)
        frame.int64(record.created)
        frame.string(topic)
        frame.properties(properties)
        frame.bytes(payload)
        let bodyLength = frame.data.count - 8
        let checksum = frame.data.withUnsafeBufferPointer { CRC32.checksum(UnsafeBufferPointer(rebasing: $0[8...])) }
        frame.data.withUnsafeMutableBytes { header in
            header.storeBytes(of: UInt32(bodyLength).littleEndian, toByteOffset: 0, as: UInt32.self)
            header.storeBytes(of: checksum.littleEndian, toByteOffset: 4, as: UInt32.self)
        }
        if writeFD < 0 || (segments.last?.size ?? 0) >= settings.segmentSize { try startSegment() }
        let written = frame.data.withUnsafeBytes { write(writeFD, $0.baseAddress, $0.count) }
        guard written == frame.data.count else {
            let code = errno
            // A short write leaves a torn record: cut it so that the next append starts clean.
            if written > 0, let last = segments.last { _ = ftruncate(writeFD, off_t(last.size)) }
            throw Failure.io("cannot append to the spool", code)
        }
        segments[segments.count - 1].size += frame.data.count
        segments[segments.count - 1].lastSequence = record.sequence
        totalBytes += frame.data.count
        nextSequence += 1
        recent.append((record, frame.data.count))
        recentBytes += frame.data.count
        while recent.count > Self.recentLimit.count || recentBytes > Self.recentLimit.bytes, let dropped = recent.popFirst() {
            recentBytes -= dropped.length
        }
        switch settings.fsync {
        case .always: _ = fdatasync(writeFD)
        case .interval, .never: dataDirty = true
        }
        return record
    }

    private func startSegment() throws {
        if writeFD >= 0 {
            // The finished segment goes to the disk off the event loop, as the interval's flush does: flushing up to
            // a segment of dirty pages in place stalled both directions (about 10 ms for 16 MiB on a VM disk, far
            // more on flash). With `always` every record is on the disk already; `never` promises nothing.
            if case .interval = settings.fsync { flushInBackground([writeFD]) }
            close(writeFD)
            writeFD = -1
        }
        let path = settings.directory + "/" + String(format: "%020llu", nextSequence) + ".seg"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure.io("cannot create spool segment \(path)", errno) }
        writeFD = fd
        if let last = segments.last, last.path == path {
            return
        }
        segments.append(Segment(firstSequence: nextSequence, lastSequence: nextSequence - 1, path: path, size: fileSize(path)))
    }

    /// Forces appended records and the cursor to the disk (the `fsync` interval's timer, and at stop). The flush
    /// runs on another thread with duplicated descriptors, so a slow disk never stalls the event loop; `wait`
    /// (at stop) flushes in place.
    func sync(wait: Bool = false) {
        if cursorDirty { persistCursor() }
        var descriptors = [cursorFD]
        if dataDirty, writeFD >= 0 { descriptors.append(writeFD) }
        dataDirty = false
        if wait {
            for fd in descriptors { _ = fdatasync(fd) }
            // And what earlier flushes (finished segments, earlier intervals) still have on their way.
            backgroundFlushes.wait()
            return
        }
        flushInBackground(descriptors)
    }

    /// `fdatasync` on duplicates of `descriptors` on another thread; ``sync(wait:)`` with `wait` waits for it.
    private func flushInBackground(_ descriptors: [Int32]) {
        let duplicates = descriptors.map { dup($0) }.filter { $0 >= 0 }
        guard !duplicates.isEmpty else { return }
        let flushes = backgroundFlushes
        flushes.enter()
        DispatchQueue.global(qos: .utility).async {
            for fd in duplicates {
                _ = fdatasync(fd)
                close(fd)
            }
            flushes.leave()
        }
    }

    // MARK: reading

    /// The next record to send, in order; nil when everything appended was handed out. Records older than
    /// `max-age` are skipped and counted.
    func nextToSend() throws -> OutboundRecord? {
        while sendSequence < nextSequence {
            let record: OutboundRecord
            while let first = recent.first, first.record.sequence < sendSequence {
                recent.removeFirst()
                recentBytes -= first.length
            }
            if let first = recent.first, first.record.sequence == sendSequence {
                recent.removeFirst()
                recentBytes -= first.length
                record = first.record
                normalizeReader()
                readOffset += first.length
            } else {
                record = try readRecord()
            }
            sendSequence += 1
            if let maxAge = settings.maxAge, Self.nowMillis() - record.created > Self.millis(maxAge) {
                expired += 1
                acknowledge(record.sequence)
                continue
            }
            handedOut.append((record.sequence, record.created))
            return record
        }
        return nil
    }

    /// Skips the oldest records not yet handed out until the spool has room again (`when-full: drop-oldest`).
    /// Returns how many were dropped.
    func dropOldestUntilRoom() throws -> Int {
        var dropped = 0
        while !hasRoom, sendSequence < nextSequence {
            _ = try readRecord()
            acknowledge(sendSequence)
            sendSequence += 1
            dropped += 1
        }
        return dropped
    }

    /// Gives up on the rest of the segment being read (a damaged record): counted as acknowledged.
    func skipUnreadable() {
        normalizeReader()
        let end = readSegment < segments.count ? segments[readSegment].lastSequence : nextSequence - 1
        while sendSequence <= end, sendSequence < nextSequence {
            acknowledge(sendSequence)
            sendSequence += 1
        }
        moveToNextSegment()
    }

    /// Hands out everything not yet acknowledged again (the Ditto-side client was replaced with records in
    /// flight). Records acknowledged out of order beyond the cursor go out twice (at-least-once).
    func rewindToCursor() throws {
        ackedAhead.removeAll()
        handedOut.removeAll()
        sendSequence = ackedThrough + 1
        try positionReader(at: sendSequence)
    }

    /// Records skipped for `max-age` since the last call.
    func takeExpired() -> Int {
        defer { expired = 0 }
        return expired
    }

    private func readRecord() throws -> OutboundRecord {
        normalizeReader()
        try ensureReadFD()
        guard let body = readRecordBytes(fd: readFD, offset: readOffset) else {
            throw Failure.io("spool record \(sendSequence) unreadable in \(segments[readSegment].path)", EIO)
        }
        readOffset += 8 + body.count
        var reader = ByteReader(bytes: body)
        guard let sequence = reader.uint64(), let created = reader.int64(), let topic = reader.string(),
              let properties = reader.properties(), let payload = reader.bytes(), sequence == sendSequence
        else { throw Failure.io("spool record \(sendSequence) malformed in \(segments[readSegment].path)", EIO) }
        return OutboundRecord(sequence: sequence, created: created, topic: topic, payload: payload, properties: properties)
    }

    private func moveToNextSegment() {
        guard readSegment + 1 < segments.count else { return }
        readSegment += 1
        readOffset = 0
    }

    /// Moves the read position from the end of a segment to the start of the next one.
    private func normalizeReader() {
        while readSegment + 1 < segments.count, readOffset >= segments[readSegment].size {
            readSegment += 1
            readOffset = 0
        }
    }

    private func ensureReadFD() throws {
        guard readSegment < segments.count else { throw Failure.io("spool has no segment to read", ENOENT) }
        let path = segments[readSegment].path
        if readFD >= 0, readFDPath == path { return }
        if readFD >= 0 { close(readFD) }
        readFD = open(path, O_RDONLY | O_CLOEXEC)
        readFDPath = path
        guard readFD >= 0 else { throw Failure.io("cannot open spool segment \(path)", errno) }
    }

    /// Puts the reader on the record with `sequence` (recovery).
    private func positionReader(at sequence: UInt64) throws {
        readSegment = segments.firstIndex { $0.lastSequence >= sequence } ?? max(segments.count - 1, 0)
        readOffset = 0
        guard readSegment < segments.count, segments[readSegment].firstSequence < sequence else { return }
        try ensureReadFD()
        while let (found, length) = readHeaderAndCheck(fd: readFD, offset: readOffset), found < sequence {
            readOffset += length
        }
    }

    // MARK: acknowledging

    /// Ditto's broker took record `sequence` (or it was dropped on purpose).
    func acknowledge(_ sequence: UInt64) {
        guard sequence > ackedThrough else { return }
        if sequence == ackedThrough + 1 {
            ackedThrough = sequence
            while ackedAhead.remove(ackedThrough + 1) != nil { ackedThrough += 1 }
        } else {
            ackedAhead.insert(sequence)
        }
        cursorDirty = true
        while let first = handedOut.first, first.sequence <= ackedThrough { handedOut.removeFirst() }
        if let first = segments.first, first.lastSequence <= ackedThrough, segments.count > 1 {
            deleteAcknowledgedSegments()
        }
    }

    private func deleteAcknowledgedSegments() {
        while segments.count > 1, let first = segments.first, first.lastSequence <= ackedThrough {
            unlink(first.path)
            totalBytes -= first.size
            segments.removeFirst()
            // Everything in it was handed out, so the reader was at its end or beyond.
            if readSegment > 0 { readSegment -= 1 } else { readOffset = 0 }
            if readFDPath == first.path, readFD >= 0 {
                close(readFD)
                readFD = -1
                readFDPath = ""
            }
        }
    }

    /// Writes the cursor (16 bytes at offset 0: the sequence number and its checksum) to the page cache, which
    /// survives a crash of the process; ``sync(wait:)`` puts it on the disk.
    func persistCursor() {
        var writer = ByteWriter()
        writer.uint64(ackedThrough)
        let checksum = CRC32.checksum(writer.data)
        writer.uint32(checksum)
        writer.uint32(0)
        _ = writer.data.withUnsafeBytes { pwrite(cursorFD, $0.baseAddress, $0.count, 0) }
        if case .always = settings.fsync { _ = fdatasync(cursorFD) }
        cursorDirty = false
    }

    /// Age of the oldest record not yet acknowledged, in seconds (0 when none).
    var oldestAge: Double {
        guard unacknowledged > 0 else { return 0 }
        // In order: the oldest unacknowledged record is the first one in flight, or with nothing in flight the
        // next to send, usually still in memory. Only a backlog beyond the memory cache needs the disk.
        if let first = handedOut.first, first.sequence == ackedThrough + 1 {
            return Double(Self.nowMillis() - first.created) / 1_000
        }
        if handedOut.isEmpty, let first = recent.first, first.record.sequence == ackedThrough + 1 {
            return Double(Self.nowMillis() - first.record.created) / 1_000
        }
        guard let first = segments.first(where: { $0.lastSequence > ackedThrough }) else { return 0 }
        guard let fd = Optional(open(first.path, O_RDONLY | O_CLOEXEC)), fd >= 0 else { return 0 }
        defer { close(fd) }
        // The cursor only moves forward: resume where the last look found the oldest record.
        var offset = ageScan.flatMap { $0.path == first.path ? $0.offset : nil } ?? 0
        while let body = readRecordBytes(fd: fd, offset: offset) {
            var reader = ByteReader(bytes: body)
            if let sequence = reader.uint64(), sequence > ackedThrough, let created = reader.int64() {
                ageScan = (first.path, offset)
                return Double(Self.nowMillis() - created) / 1_000
            }
            offset += 8 + body.count
        }
        return 0
    }

    static func nowMillis() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000 + Int64(spec.tv_nsec) / 1_000_000
    }

    static func millis(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
}

/// Live-event revisions that never go backwards across restarts: each run starts its per-thing counters at a
/// base above everything an earlier run can have issued.
///
/// The base is the wall clock in microseconds, and with a state directory also at least 2^40 above the base
/// the previous run persisted, so a clock set back (a gateway without a real-time clock before NTP) cannot make
/// revisions repeat.
enum RevisionBase {
    static let perRunSpan: Int64 = 1 << 40

    static func next(stateDirectory: String?, logger: Logger) -> Int64 {
        let clock = Spool.nowMillis() * 1_000
        guard let stateDirectory else { return clock }
        let path = stateDirectory + "/revision-base"
        let previous = (try? String(contentsOfFile: path, encoding: .utf8))
            .flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let base = max(clock, (previous ?? 0) + (previous == nil ? 0 : perRunSpan))
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd >= 0 {
            let text = Array("\(base)\n".utf8)
            _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            _ = fsync(fd)
            close(fd)
            if rename(temporary, path) != 0 {
                logger.error("cannot persist the revision base", metadata: ["path": "\(path)", "errno": "\(errno)"])
            }
        } else {
            logger.error("cannot persist the revision base", metadata: ["path": "\(path)", "errno": "\(errno)"])
        }
        return base
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
