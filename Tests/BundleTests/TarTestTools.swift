import Bundle
import Foundation
import TestSupport

/// Helpers of the tar tests (a namespace so nothing clashes with other test files).
enum TarTestTools {
    /// A fresh empty directory; removed by `cleanup`.
    static func scratch(_ prefix: String = "tar") throws -> String {
        try TestRegistry.temporaryDirectory("dkp-\(prefix)").path
    }

    static func cleanup(_ directory: String) {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Deterministic pseudo-random bytes.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        SeededGenerator.bytes(count, seed: seed)
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func write(_ path: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func list(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    /// A tar built the plain sequential way, as Go's writer would: header, data, padding per
    /// entry, then two zero blocks. The reference the concurrent writer must match.
    static func sequentialTar(_ entries: [(name: String, data: [UInt8])]) -> [UInt8] {
        RawTar.tar(entries)
    }

    /// The mixed set of entries the writer tests use: empty, tiny, block-edge and large files,
    /// long names, nested layouts.
    static func sampleEntries(count: Int = 50) -> [(name: String, data: [UInt8])] {
        let sizes = [0, 1, 511, 512, 513, (1 << 20) + 3, 1023, 1024, 4097, 100_000, 200_001]
        var entries = [(name: String, data: [UInt8])]()
        for i in 0..<count {
            let size = sizes[i % sizes.count]
            let name: String
            switch i % 5 {
            case 0: name = "index-\(i).json"
            case 1: name = "blobs/sha256/" + String(repeating: "ab", count: 32) + "\(i)"
            case 2: name = "modules/module-\(i)/" + String(repeating: "n", count: 90) + "/blobs/sha256/x\(i)"
            case 3: name = "release-channel/oci-layout-\(i)"
            default: name = "install/blobs/" + String(repeating: "z", count: 88 - String(i).count) + "-\(i)"
            }
            entries.append((name, bytes(size, seed: UInt64(i + 1))))
        }
        return entries
    }

    /// `tar -tvf` of `path`: (mode, owner, size, name) per line.
    static func gnuList(_ path: String) async throws -> [(mode: String, owner: String, size: Int64, name: String)] {
        let output = try await TestProcess.run("tar", ["-tvf", path])
        guard output.succeeded else { throw TestSupportError("tar -tvf failed: \(output.stderrString)") }
        return output.stdoutString.split(separator: "\n").map { line in
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            return (String(fields[0]), String(fields[1]), Int64(fields[2]) ?? -1, String(fields[5]))
        }
    }

    /// Writes `entries` through a `TarFileWriter` from a task group, in shuffled order, the
    /// large ones streamed in odd-sized pieces. `only` limits which entries are written.
    static func writeConcurrently(
        _ writer: TarFileWriter, _ entries: [(name: String, data: [UInt8])], only: Set<Int>? = nil
    ) async throws {
        var order = Array(entries.indices.filter { only?.contains($0) ?? true })
        order.shuffle()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in order {
                let data = entries[index].data
                group.addTask {
                    if data.count < 4096 {
                        try writer.writeEntry(index, bytes: data)
                        return
                    }
                    let stream = writer.entryStream(index)
                    var offset = 0
                    var piece = 7 + index * 13
                    try data.withUnsafeBytes { raw in
                        while offset < raw.count {
                            let end = min(raw.count, offset + piece)
                            try stream.append(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                            offset = end
                            piece = piece * 3 % 65_521 + 1
                        }
                    }
                    try stream.finish()
                }
            }
            try await group.waitForAll()
        }
    }
}
