import Foundation
import Glibc
import Logging

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
