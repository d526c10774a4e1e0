import Foundation
import Synchronization

/// Shared counters of a transfer, updated by the engines from many tasks and read by the
/// CLI's progress renderer. Bytes count as they stream, not when a blob completes.
public final class TransferProgress: Sendable {
    public struct Snapshot: Sendable, Codable, Equatable {
        public var totalBlobs = 0
        public var totalBytes: Int64 = 0
        public var doneBlobs = 0
        public var skippedBlobs = 0
        public var transferredBytes: Int64 = 0
        /// Bytes of blobs that needed no transfer (already present, or mounted).
        public var skippedBytes: Int64 = 0
        public var totalImages = 0
        public var doneImages = 0
    }

    public enum Event: Sendable {
        case planned(Snapshot)
        case blobDone(digest: String, bytes: Int64, skipped: Bool)
        case imageDone(reference: String)
        case message(String)
    }

    private let state = Mutex(Snapshot())
    private let firstByte = Mutex<ContinuousClock.Instant?>(nil)
    private let sawFirstByte = Atomic(false)
    private let listener: (@Sendable (Event) -> Void)?
    public let started = ContinuousClock.now

    public init(listener: (@Sendable (Event) -> Void)? = nil) {
        self.listener = listener
    }

    public var snapshot: Snapshot { state.withLock { $0 } }

    public func plan(blobs: Int, bytes: Int64, images: Int) {
        let snapshot = state.withLock {
            $0.totalBlobs += blobs
            $0.totalBytes += bytes
            $0.totalImages += images
            return $0
        }
        listener?(.planned(snapshot))
    }

    public func addBytes(_ count: Int) {
        state.withLock { $0.transferredBytes += Int64(count) }
        if count > 0, !sawFirstByte.load(ordering: .relaxed) {
            let now = ContinuousClock.now
            firstByte.withLock { if $0 == nil { $0 = now } }
            sawFirstByte.store(true, ordering: .relaxed)
        }
    }

    /// When the first blob byte of this transfer arrived (nil while none has).
    public var firstByteAt: ContinuousClock.Instant? { firstByte.withLock { $0 } }

    /// A blob finished; `transferred` says whether its bytes crossed the wire.
    public func blobDone(digest: String, bytes: Int64, transferred: Bool) {
        state.withLock {
            $0.doneBlobs += 1
            if !transferred {
                $0.skippedBlobs += 1
                $0.skippedBytes += bytes
            }
        }
        listener?(.blobDone(digest: digest, bytes: bytes, skipped: !transferred))
    }

    /// Undo the streamed-byte count of an attempt that failed and will be redone.
    public func retract(bytes: Int64) {
        state.withLock { $0.transferredBytes -= bytes }
    }

    public func imageDone(_ reference: String) {
        state.withLock { $0.doneImages += 1 }
        listener?(.imageDone(reference: reference))
    }

    public func note(_ message: String) {
        listener?(.message(message))
    }

    public var elapsed: Duration { ContinuousClock.now - started }
}

/// The moment the process started, as near as Swift can tell: `main` reads it first.
public enum ProcessClock {
    public static let started = ContinuousClock.now
}

/// Peak resident memory of this process (VmHWM), in bytes; 0 where /proc is absent.
public func peakResidentBytes() -> Int64 {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let digits = line.split(separator: " ").dropFirst().first.flatMap { Int64($0) } ?? 0
        return digits * 1024
    }
    return 0
}

extension Duration {
    /// The duration as fractional seconds.
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// `123 B`, `4.5 MB`, `1.2 GB` (decimal units, as the progress lines print them).
public func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000, unit < units.count - 1 {
        value /= 1000
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}
