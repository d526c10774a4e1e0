import ArgumentParser
import Bundle
import Foundation
import Streams

/// Scans one layer file for wanted paths in a process of its own, so a memory test can read
/// this process's peak RSS without the rest of a parallel test suite in the same figure.
struct LayerScanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layer-scan",
        abstract: "Read wanted files out of a layer file (tar, gzip or zstd) and print, as JSON, their sizes and how far the peak RSS grew.")

    @Argument(help: "The layer file.") var path: String
    @Option(help: "A path to read out of the layer (repeatable).") var wanted: [String] = []
    @Option(help: "The largest wanted file, in bytes.") var maxFileSize = 16 << 20

    struct Report: Encodable {
        /// Wanted path -> its size in bytes.
        var files: [String: Int]
        /// VmHWM after the scan less VmRSS before it, in KiB (the peak is reset first).
        var peakGrowthKiB: Int
    }

    func run() async throws {
        guard Self.resetPeak() else { throw ValidationError("cannot reset the peak RSS (/proc/self/clear_refs)") }
        guard let before = Self.status("VmRSS") else { throw ValidationError("cannot read VmRSS in /proc/self/status") }
        let scan = try await LayerFiles.scan(layer: FileChunks(path: path), wanted: Set(wanted), maxFileSize: maxFileSize)
        let report = Report(files: scan.files.mapValues(\.count), peakGrowthKiB: (Self.status("VmHWM") ?? 0) - before)
        print(String(decoding: try JSONEncoder().encode(report), as: UTF8.self))
    }

    /// A field of /proc/self/status in kB.
    static func status(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
        }
        return nil
    }

    /// Sets VmHWM to the current RSS ("5" to clear_refs).
    static func resetPeak() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }

    /// The file in 1 MiB chunks.
    struct FileChunks: AsyncSequence, Sendable {
        let path: String
        struct AsyncIterator: AsyncIteratorProtocol {
            let reader: Result<ChunkedFileReader, Error>
            mutating func next() async throws -> [UInt8]? {
                try reader.get().next().map { Array($0) }
            }
        }
        func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(reader: Result { try ChunkedFileReader(path: path, chunkSize: 1 << 20) })
        }
    }
}
