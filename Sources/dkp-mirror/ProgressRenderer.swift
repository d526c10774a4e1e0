import Foundation
import Mirror
import Synchronization

/// Renders a `TransferProgress` on stderr: a redrawn bar on a terminal, a plain line every
/// few seconds otherwise, or JSON events on stdout.
final class ProgressRenderer: Sendable {
    let mode: ProgressMode
    let progress: TransferProgress
    private let ticker: Task<Void, Never>

    /// The mode `auto` resolves to for this process.
    static func resolve(_ mode: ProgressMode) -> ProgressMode {
        guard mode == .auto else { return mode }
        return isatty(STDERR_FILENO) == 1 ? .bar : .plain
    }

    /// Makes the progress object with a listener that fits `mode`, and starts the renderer.
    static func start(_ requested: ProgressMode) -> ProgressRenderer {
        let mode = resolve(requested)
        if mode == .json { terminal.withLock { $0.jsonEventsOnStdout = true } }
        let progress = TransferProgress(listener: { event in
            switch (mode, event) {
            case let (.json, .blobDone(digest, bytes, skipped)):
                emitJSON(["event": "blob", "digest": digest, "bytes": bytes, "skipped": skipped])
            case let (.json, .imageDone(reference)):
                emitJSON(["event": "image", "reference": reference])
            case let (.json, .planned(s)):
                emitJSON(["event": "plan", "blobs": s.totalBlobs, "bytes": s.totalBytes, "images": s.totalImages])
            case let (.json, .message(text)):
                emitJSON(["event": "message", "text": text])
            case let (.plain, .message(text)), let (.bar, .message(text)):
                writeErr("\(text)\n")
            default:
                break
            }
        })
        return ProgressRenderer(mode: mode, progress: progress)
    }

    private init(mode: ProgressMode, progress: TransferProgress) {
        self.mode = mode
        self.progress = progress
        ticker = Task { [progress] in
            let interval: Duration = mode == .bar ? .milliseconds(250) : .seconds(mode == .json ? 1 : 5)
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { break }
                Self.render(progress, mode: mode, final: false)
            }
        }
    }

    /// Stops the ticker and draws the last state; after a failure only ends a drawn bar,
    /// so the error stands alone on its line.
    func finish(success: Bool = true) {
        ticker.cancel()
        if success {
            Self.render(progress, mode: mode, final: true)
        } else if mode == .bar {
            writeErr("")
        }
    }

    private static func render(_ progress: TransferProgress, mode: ProgressMode, final: Bool) {
        let s = progress.snapshot
        let seconds = max(0.001, progress.elapsed.seconds)
        let rate = Double(s.transferredBytes) / seconds
        switch mode {
        case .bar:
            let done = s.transferredBytes + s.skippedBytes
            let fraction = s.totalBytes > 0 ? min(1, Double(done) / Double(s.totalBytes)) : (final ? 1 : 0)
            let width = 24
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let remaining = Double(max(0, s.totalBytes - done))
            let eta = rate > 0 && !final ? " ETA \(formatDuration(remaining / rate))" : ""
            drawBar("\r[\(bar)] \(Int(fraction * 100))% \(formatBytes(done))/\(formatBytes(s.totalBytes)) \(formatBytes(Int64(rate)))/s blobs \(s.doneBlobs)/\(s.totalBlobs) images \(s.doneImages)/\(s.totalImages)\(eta)   ", final: final)
        case .plain:
            if s.totalBlobs == 0 && !final { return }
            writeErr("progress: \(formatBytes(s.transferredBytes + s.skippedBytes))/\(formatBytes(s.totalBytes)), blobs \(s.doneBlobs)/\(s.totalBlobs), images \(s.doneImages)/\(s.totalImages), \(formatBytes(Int64(rate)))/s\n")
        case .json:
            emitJSON(["event": "progress", "bytes": s.transferredBytes + s.skippedBytes, "totalBytes": s.totalBytes,
                      "blobs": s.doneBlobs, "totalBlobs": s.totalBlobs, "images": s.doneImages, "totalImages": s.totalImages,
                      "bytesPerSecond": Int64(rate)])
        case .none, .auto:
            break
        }
    }
}

/// What is on the terminal: whether a progress bar is drawn on the last line of stderr, and
/// whether stdout carries JSON events (then a result is one line too).
private struct TerminalState {
    var barDrawn = false
    var jsonEventsOnStdout = false
}

private let terminal = Mutex(TerminalState())

/// Draws the bar over itself; `final` ends its line.
private func drawBar(_ line: String, final: Bool) {
    terminal.withLock { state in
        FileHandle.standardError.write(Data((line + (final ? "\n" : "")).utf8))
        state.barDrawn = !final
    }
}

/// A line of its own on stderr: over a drawn bar it first clears that line (the next tick draws
/// the bar again below), so a note never runs into the bar.
func writeErr(_ text: String) {
    terminal.withLock { state in
        let clear = state.barDrawn ? "\r\u{1B}[K" : ""
        state.barDrawn = false
        FileHandle.standardError.write(Data((clear + text).utf8))
    }
}

private let stdoutLock = NSLock()

/// One JSON object per line on stdout.
func emitJSON(_ object: [String: Any]) {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
    stdoutLock.lock()
    FileHandle.standardOutput.write(data + Data("\n".utf8))
    stdoutLock.unlock()
}

/// Encodes a result as pretty JSON on stdout; as one line among `--progress json` events, so
/// stdout stays one JSON object per line.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    let oneLine = terminal.withLock { $0.jsonEventsOnStdout }
    encoder.outputFormatting = oneLine ? [.sortedKeys, .withoutEscapingSlashes] : [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
}

func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
