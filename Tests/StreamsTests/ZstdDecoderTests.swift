import DevSupport
import Foundation
import Streams
import Testing

/// The zstd decoder against the `zstd` command line tool's output (Debian's `zstd`, in
/// scripts/common.sh's packages).
@Suite struct ZstdDecoderTests {
    /// Bytes that compress like a layer: repeated text with varying numbers, and a stretch of noise.
    static func sample(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        var generator = SeededGenerator(seed: seed)
        var line = 0
        while bytes.count < count {
            line += 1
            if line % 50 == 0 {
                bytes.append(contentsOf: generator.bytes(200))
            } else {
                bytes.append(contentsOf: Array("usr/lib/file-\(line).so mode 0644 size \(line * 37)\n".utf8))
            }
        }
        return Array(bytes.prefix(count))
    }

    /// `bytes` compressed by `zstd` with `arguments` (level, checksum options).
    static func zstdCLI(_ bytes: [UInt8], _ arguments: [String] = ["-3"]) throws -> [UInt8] {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("zstd-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let plain = folder.appendingPathComponent("plain")
        let packed = folder.appendingPathComponent("plain.zst")
        try Data(bytes).write(to: plain)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["zstd", "-q", "-f"] + arguments + [plain.path, "-o", packed.path]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "zstd failed")
        return Array(try Data(contentsOf: packed))
    }

    /// Decodes `input` fed in pieces of `inputPiece` bytes through a decoder with `outputSize`.
    static func decode(_ input: [UInt8], inputPiece: Int = 1 << 20, outputSize: Int = ZstdDecoder.recommendedOutputSize)
        throws -> (bytes: [UInt8], largestOutput: Int)
    {
        let decoder = try ZstdDecoder(outputSize: outputSize)
        var output: [UInt8] = []
        var largest = 0
        try input.withUnsafeBytes { all in
            var start = 0
            while start < all.count {
                let end = min(start + inputPiece, all.count)
                try decoder.decode(UnsafeRawBufferPointer(rebasing: all[start..<end])) { piece in
                    largest = max(largest, piece.count)
                    output.append(contentsOf: piece)
                }
                start = end
            }
        }
        try decoder.finish()
        #expect(decoder.decodedBytes == Int64(output.count))
        #expect(decoder.inputBytes == Int64(input.count))
        return (output, largest)
    }

    @Test(arguments: [0, 1, 1000, 3 << 20])
    func roundTripOfTheCLIOutput(size: Int) throws {
        let plain = Self.sample(size)
        let packed = try Self.zstdCLI(plain)
        #expect(ZstdDecoder.looksLikeZstd(UnsafeRawBufferPointer(start: packed, count: packed.count)))
        #expect(try Self.decode(packed).bytes == plain)
    }

    @Test func multipleFramesAndASkippableFrameDecodeAsOneStream() throws {
        let first = Self.sample(200_000, seed: 1)
        let second = Self.sample(300_000, seed: 2)
        // A skippable frame: magic 0x184D2A5F, a 4-byte length, then that many ignored bytes.
        let skippable: [UInt8] = [0x5f, 0x2a, 0x4d, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5]
        let packed = try Self.zstdCLI(first, ["-1"]) + skippable + (try Self.zstdCLI(second, ["-19", "--no-check"]))
        #expect(try Self.decode(packed, inputPiece: 4096).bytes == first + second)
    }

    @Test func smallBuffersStreamEveryByte() throws {
        let plain = Self.sample(100_000)
        let packed = try Self.zstdCLI(plain)
        let (bytes, largest) = try Self.decode(packed, inputPiece: 3, outputSize: 7)
        #expect(bytes == plain)
        #expect(largest <= 7)
    }

    @Test(arguments: [1, 5, 100, -1])
    func truncatedFrameIsRefused(cut: Int) throws {
        let packed = try Self.zstdCLI(Self.sample(500_000))
        // Keep `cut` bytes, or all but the last byte for -1.
        let kept = Array(packed.prefix(cut < 0 ? packed.count - 1 : cut))
        #expect(throws: ZstdError.self) { try Self.decode(kept) }
        do {
            _ = try Self.decode(kept)
        } catch let error as ZstdError {
            guard case .truncated(let input, _) = error else {
                Issue.record("expected a truncated stream, got \(error)")
                return
            }
            #expect(input == Int64(kept.count))
            #expect(error.description.contains("truncated"))
        }
    }

    @Test func garbageIsRefusedWithLibzstdsMessage() throws {
        let garbage = Array("this is not zstd data at all, just text".utf8)
        #expect(!ZstdDecoder.looksLikeZstd(UnsafeRawBufferPointer(start: garbage, count: garbage.count)))
        #expect(throws: ZstdError.corrupt(message: "Unknown frame descriptor", inputOffset: 0)) {
            try Self.decode(garbage)
        }
        #expect(ZstdError.corrupt(message: "Unknown frame descriptor", inputOffset: 0).description
            == "invalid zstd data at or after input byte 0: Unknown frame descriptor")
    }

    @Test func damagedFrameFailsItsChecksum() throws {
        let plain = Self.sample(400_000)
        var packed = try Self.zstdCLI(plain)
        // A byte inside the last block's data: the content checksum, if not the block, disagrees.
        packed[packed.count - 20] ^= 0x55
        #expect {
            _ = try Self.decode(packed)
        } throws: { error in
            guard case .corrupt = error as? ZstdError else { return false }
            return true
        }
    }

    @Test func emptyInputIsNotAStream() throws {
        #expect(throws: ZstdError.empty) { try Self.decode([]) }
    }

    @Test func anErrorOfTheConsumerStopsDecoding() throws {
        struct Stop: Error {}
        let packed = try Self.zstdCLI(Self.sample(1 << 20))
        let decoder = try ZstdDecoder(outputSize: 4096)
        var calls = 0
        #expect(throws: Stop.self) {
            try packed.withUnsafeBytes { bytes in
                try decoder.decode(bytes) { _ in
                    calls += 1
                    if calls == 3 { throw Stop() }
                }
            }
        }
        #expect(calls == 3)
    }
}
