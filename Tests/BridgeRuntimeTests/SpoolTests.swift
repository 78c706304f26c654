import BridgeConfig
import Foundation
import Logging
import MQTT
import Mosquitto
import Testing

@testable import BridgeRuntime

/// The spool on a real temp directory: what is appended survives reopening until acknowledged, in order.
struct SpoolTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID().uuidString)").path
    let logger = Logger(label: "spool-test")

    func settings(_ change: (inout SpoolSettings) -> Void = { _ in }) -> SpoolSettings {
        var settings = SpoolSettings(directory: directory, segmentSize: 4 << 10)
        change(&settings)
        return settings
    }

    func append(_ spool: Spool, _ count: Int, from first: Int = 0) throws {
        for index in first..<first + count {
            var properties = PublishProperties()
            properties.correlationData = Array("c-\(index)".utf8)
            properties.userProperties = [UserProperty(name: "n", value: "\(index)")]
            try spool.append(topic: "ditto/in/t", payload: Array("payload-\(index)".utf8), properties: properties)
        }
    }

    /// The path of the one segment a spool (closed again) wrote `count` records into.
    func segmentFile(holding count: Int) throws -> String {
        do {
            let spool = try Spool(settings: settings { $0.segmentSize = 1 << 20 }, logger: logger)
            try append(spool, count)
        }
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".seg") })
        return directory + "/" + segment
    }

    func drain(_ spool: Spool) throws -> [String] {
        var payloads: [String] = []
        while let record = try spool.nextToSend() { payloads.append(String(decoding: record.payload, as: UTF8.self)) }
        return payloads
    }

    @Test func unacknowledgedRecordsComeBackInOrderAfterReopening() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let spool = try Spool(settings: settings(), logger: logger)
            try append(spool, 200)
            let sent = try drain(spool)
            #expect(sent.count == 200)
            for sequence in 1...120 { spool.acknowledge(UInt64(sequence)) }
            spool.persistCursor()
        }
        let reopened = try Spool(settings: settings(), logger: logger)
        #expect(reopened.backlog == 80)
        let replayed = try drain(reopened)
        #expect(replayed == (120..<200).map { "payload-\($0)" })
        // New records continue the numbering after the replayed ones.
        try append(reopened, 1, from: 200)
        #expect(try drain(reopened) == ["payload-200"])
    }

    @Test("The oldest unacknowledged record's age: from memory in flight, from the disk after a reopen, 0 when empty")
    func oldestAgeFollowsTheCursor() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var appendingLater = ContinuousClock.now
        do {
            let spool = try Spool(settings: settings(), logger: logger)
            #expect(spool.oldestAge == 0)
            try append(spool, 3)
            try await Task.sleep(for: .milliseconds(300))
            appendingLater = ContinuousClock.now
            try append(spool, 3, from: 3)
            // Nothing handed out: the next to send (record 1, 0.3 s old) is the oldest.
            #expect(spool.oldestAge >= 0.3)
            _ = try drain(spool)
            #expect(spool.oldestAge >= 0.3)
            for sequence in 1...3 { spool.acknowledge(UInt64(sequence)) }
            // Records 4...6 were appended just now.
            #expect(spool.oldestAge < 0.3)
            spool.acknowledge(5)
            #expect(spool.oldestAge < 0.3)
            spool.persistCursor()
        }
        // After a reopen nothing is in memory: the age comes from the disk, resuming where it found it.
        let reopened = try Spool(settings: settings(), logger: logger)
        try await Task.sleep(for: .milliseconds(100))
        let age = reopened.oldestAge
        // Record 4's age, not record 1's (0.3 s more); measured, because a sleep on a busy pool can overshoot.
        let sinceRecord4 = ContinuousClock.now - appendingLater
        #expect(age >= 0.1 && age <= Double(sinceRecord4.components.seconds)
            + Double(sinceRecord4.components.attoseconds) / 1e18 + 0.05, "\(age) s, \(sinceRecord4) since record 4")
        #expect(reopened.oldestAge >= age)
        _ = try drain(reopened)
        for sequence in 4...6 { reopened.acknowledge(UInt64(sequence)) }
        #expect(reopened.oldestAge == 0)
    }

    @Test func propertiesSurviveTheDisk() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let spool = try Spool(settings: settings(), logger: logger)
            var properties = PublishProperties(payloadFormatIndicator: 1, messageExpiryInterval: 9,
                                               contentType: "application/json", responseTopic: "r/t",
                                               correlationData: [0, 255, 7])
            properties.userProperties = [UserProperty(name: "a", value: "1"), UserProperty(name: "a", value: "2")]
            try spool.append(topic: "ditto/in/x", payload: [1, 2, 3], properties: properties)
        }
        let record = try #require(try Spool(settings: settings(), logger: logger).nextToSend())
        #expect(record.topic == "ditto/in/x")
        #expect(record.payload == [1, 2, 3])
        #expect(record.properties.contentType == "application/json")
        #expect(record.properties.responseTopic == "r/t")
        #expect(record.properties.correlationData == [0, 255, 7])
        #expect(record.properties.messageExpiryInterval == 9)
        #expect(record.properties.userProperties.map(\.value) == ["1", "2"])
    }

    @Test func fullyAcknowledgedSegmentsAreDeleted() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try Spool(settings: settings(), logger: logger)
        try append(spool, 500)
        let segments = { (try? FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg") }.count) ?? 0 }
        #expect(segments() > 3)
        _ = try drain(spool)
        for sequence in 1...500 { spool.acknowledge(UInt64(sequence)) }
        #expect(segments() == 1)
        #expect(spool.unacknowledged == 0)
    }

    @Test func outOfOrderAcknowledgementsMoveTheCursorOnlyOverAGaplessPrefix() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try Spool(settings: settings(), logger: logger)
        try append(spool, 5)
        _ = try drain(spool)
        spool.acknowledge(2)
        spool.acknowledge(3)
        #expect(spool.ackedThrough == 0)
        spool.acknowledge(1)
        #expect(spool.ackedThrough == 3)
    }

    @Test func aTornTailFromACrashIsCutOff() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let segment = try segmentFile(holding: 10)
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data([40, 0, 0, 0, 1, 2, 3, 4, 9, 9]))  // a header promising 40 bytes, then the crash
        handle.closeFile()
        let reopened = try Spool(settings: settings { $0.segmentSize = 1 << 20 }, logger: logger)
        #expect(try drain(reopened) == (0..<10).map { "payload-\($0)" })
        try append(reopened, 1, from: 10)
        #expect(try drain(reopened) == ["payload-10"])
    }

    /// The byte-at-a-time CRC-32 the spool used before slicing-by-8: the oracle for records already on disks.
    static func referenceCRC32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }

    @Test func checksumsAreZlibsCRC32() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([]) == 0)
        #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
        var generator = SystemRandomNumberGenerator()
        for count in 0..<300 {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(CRC32.checksum(bytes) == Self.referenceCRC32(bytes), "\(count) bytes")
            // At every alignment: the eight-byte loads are unaligned.
            if count > 3 {
                let tail = bytes.withUnsafeBufferPointer { CRC32.checksum(UnsafeBufferPointer(rebasing: $0[3...])) }
                #expect(tail == Self.referenceCRC32(bytes[3...]), "\(count) bytes from offset 3")
            }
        }
    }

    /// A record on disk is `length, CRC-32 of the body, body` (little endian), as spools written by earlier versions
    /// have it, so that they replay after an upgrade.
    @Test func recordsKeepTheirOnDiskFormat() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let segment = try segmentFile(holding: 3)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: segment)))
        var offset = 0
        var records = 0
        while offset < bytes.count {
            let length = Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3]) << 24
            let stored = UInt32(bytes[offset + 4]) | UInt32(bytes[offset + 5]) << 8 | UInt32(bytes[offset + 6]) << 16
                | UInt32(bytes[offset + 7]) << 24
            let body = bytes[(offset + 8)..<(offset + 8 + length)]
            #expect(stored == Self.referenceCRC32(body))
            // The body starts with the sequence number (1, 2, 3), little endian.
            #expect(body.prefix(8).elementsEqual([UInt8(records + 1), 0, 0, 0, 0, 0, 0, 0]))
            offset += 8 + length
            records += 1
        }
        #expect(records == 3 && offset == bytes.count)
    }

    @Test func dropOldestMakesRoomAndCounts() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try Spool(settings: settings { $0.maxSize = 16 << 10; $0.whenFull = .dropOldest }, logger: logger)
        try append(spool, 600)
        #expect(spool.isFull)
        let dropped = try spool.dropOldestUntilRoom()
        #expect(dropped > 0)
        #expect(spool.hasRoom)
        let rest = try drain(spool)
        #expect(rest.count == 600 - dropped)
        #expect(rest.last == "payload-599")
        #expect(rest.first == "payload-\(dropped)")
    }

    @Test func recordsOlderThanMaxAgeAreSkipped() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let spool = try Spool(settings: settings(), logger: logger)
            try append(spool, 3)
        }
        try await Task.sleep(for: .milliseconds(1_100))
        let reopened = try Spool(settings: settings { $0.maxAge = .seconds(1) }, logger: logger)
        #expect(try drain(reopened).isEmpty)
        #expect(reopened.takeExpired() == 3)
        #expect(reopened.unacknowledged == 0)
    }

    @Test func revisionBasesOnlyGrow() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let first = RevisionBase.next(stateDirectory: directory, logger: logger)
        // A clock set back by a day must not take revisions back.
        try "\(first + 86_400_000_000)\n".write(toFile: directory + "/revision-base", atomically: true, encoding: .utf8)
        let second = RevisionBase.next(stateDirectory: directory, logger: logger)
        #expect(second >= first + 86_400_000_000 + RevisionBase.perRunSpan)
        #expect(second < 1 << 53)
    }
}
