import Foundation
import TestSupport
import Streams

/// Yields `bytes` in chunks whose sizes cycle through `sizes`.
struct LayerChunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let bytes: [UInt8]
    let sizes: [Int]

    init(_ bytes: [UInt8], chunkSizes: [Int]) {
        self.bytes = bytes
        self.sizes = chunkSizes.map { Swift.max(1, $0) }
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        let bytes: [UInt8]
        let sizes: [Int]
        var offset = 0
        var turn = 0

        mutating func next() async throws -> [UInt8]? {
            guard offset < bytes.count else { return nil }
            let size = sizes.isEmpty ? 4096 : sizes[turn % sizes.count]
            turn += 1
            let end = Swift.min(bytes.count, offset + size)
            defer { offset = end }
            return Array(bytes[offset..<end])
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(bytes: bytes, sizes: sizes)
    }
}

struct LayerInjectedFailure: Error, Equatable {
    let id: Int
}

/// Yields `bytes` in chunks, then, after `failAfter` bytes, throws `LayerInjectedFailure`;
/// with `endless`, yields zero blocks forever after the bytes instead of ending.
struct LayerScriptedChunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let bytes: [UInt8]
    let chunkSize: Int
    var failAfter: Int? = nil
    var endless = false

    struct AsyncIterator: AsyncIteratorProtocol {
        let source: LayerScriptedChunks
        var offset = 0

        mutating func next() async throws -> [UInt8]? {
            if let limit = source.failAfter, offset >= limit { throw LayerInjectedFailure(id: limit) }
            guard offset < source.bytes.count else {
                if source.endless {
                    offset += 512
                    return [UInt8](repeating: 0x41, count: 512)
                }
                return nil
            }
            var end = Swift.min(source.bytes.count, offset + source.chunkSize)
            if let limit = source.failAfter { end = Swift.min(end, Swift.max(limit, offset + 1)) }
            defer { offset = end }
            return Array(source.bytes[offset..<end])
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(source: self)
    }
}

/// A file read from disk in 1 MiB chunks.
struct LayerFileChunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let path: String

    struct AsyncIterator: AsyncIteratorProtocol {
        let reader: ChunkedFileReader?
        let error: (any Error)?

        mutating func next() async throws -> [UInt8]? {
            if let error { throw error }
            guard let reader, let chunk = try reader.next() else { return nil }
            return Array(chunk)
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        do {
            return AsyncIterator(reader: try ChunkedFileReader(path: path, chunkSize: 1 << 20), error: nil)
        } catch {
            return AsyncIterator(reader: nil, error: error)
        }
    }
}

/// A counter shared with `@Sendable` closures.
final class LayerOpenCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    private var values: [Int] = []

    func record(_ index: Int) {
        lock.lock()
        value += 1
        values.append(index)
        lock.unlock()
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    var recorded: [Int] {
        lock.lock()
        defer { lock.unlock() }
        return values
    }
}

enum LayerTestTools {
    /// Deterministic pseudo-random bytes (incompressible).
    static func noise(count: Int, seed: UInt64) -> [UInt8] {
        SeededGenerator.bytes(count, seed: seed)
    }

    /// A field of /proc/self/status, in its unit (kB for memory, a count for Threads).
    static func procStatus(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let number = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first
            return number.flatMap { Int($0) }
        }
        return nil
    }

    /// Runs `/bin/sh -c script` in `directory`; throws when it fails.
    static func shell(_ script: String, in directory: URL) async throws {
        let run = try await TestProcess.run("/bin/sh", ["-c", script], currentDirectory: directory)
        guard run.succeeded else {
            throw ShellFailure(description: "sh -c \(script) exited with \(run.status): \(run.stderrString)")
        }
    }

    struct ShellFailure: Error, CustomStringConvertible {
        let description: String
    }

    static func temporaryDirectory() throws -> URL {
        try TestRegistry.temporaryDirectory("layer-tests")
    }
}
