import BridgeConfig
import DequeModule
import Dispatch
import Foundation
import Glibc
import Logging
import MQTT
import Mosquitto

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
            let (last, validSize) = SegmentFile.scan(path: path, first: first)
            segment.lastSequence = last
            segment.size = validSize
            let actualSize = SegmentFile.fileSize(path)
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

    private func readCursor() -> UInt64? {
        var bytes = [UInt8](repeating: 0, count: 16)
        guard pread(cursorFD, &bytes, 16, 0) == 16 else { return nil }
        return SegmentFile.cursor(from: bytes)
    }

    // MARK: writing

    /// Appends a record; it counts as taken once this returns.
    @discardableResult
    func append(topic: String, payload: [UInt8], properties: PublishProperties) throws -> OutboundRecord {
        let record = OutboundRecord(sequence: nextSequence, created: Self.nowMillis(), topic: topic, payload: payload,
                                    properties: properties)
        let frame = record.frame()
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
            // a segment of dirty pages in place stalled both directions for as long as
            // the disk takes, far longer on flash). With `always` every record is on the disk already; `never` promises nothing.
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
        segments.append(Segment(firstSequence: nextSequence, lastSequence: nextSequence - 1, path: path,
                                size: SegmentFile.fileSize(path)))
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
        guard let body = SegmentFile.readRecordBytes(fd: readFD, offset: readOffset) else {
            throw Failure.io("spool record \(sendSequence) unreadable in \(segments[readSegment].path)", EIO)
        }
        readOffset += 8 + body.count
        guard let record = OutboundRecord(body: body), record.sequence == sendSequence
        else { throw Failure.io("spool record \(sendSequence) malformed in \(segments[readSegment].path)", EIO) }
        return record
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
        while let (found, length) = SegmentFile.readHeaderAndCheck(fd: readFD, offset: readOffset), found < sequence {
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
        let bytes = SegmentFile.cursorBytes(ackedThrough)
        _ = bytes.withUnsafeBytes { pwrite(cursorFD, $0.baseAddress, $0.count, 0) }
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
        while let body = SegmentFile.readRecordBytes(fd: fd, offset: offset) {
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
