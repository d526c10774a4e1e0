import Bundle
import Foundation
import OCI
import Testing

/// All layer tests, run one at a time so that the peak-RSS measurement of the big layer
/// is not disturbed by the other layer tests.
@Suite(.serialized) enum LayerTests {}

extension LayerTests {
    @Suite struct Archive {
        static let files: [(path: String, contents: [UInt8])] = [
            ("deckhouse/version", Array("v1.69.3\n".utf8)),
            ("deckhouse/edition", Array("ee".utf8)),
            ("/deckhouse/modules/images_digests.json", Array(#"{"a":{"b":"sha256:00"}}"#.utf8)),
            ("./empty", []),
            ("noise.bin", LayerTestTools.noise(count: 100_000, seed: 1)),
        ]

        @Test(arguments: [LayerCompression.none, .gzip, .zstd])
        func deterministicAndRightFormat(compression: LayerCompression) throws {
            let first = try LayerArchive.build(files: Self.files, compression: compression)
            let second = try LayerArchive.build(files: Self.files, compression: compression)
            #expect(first == second)
            switch compression {
            case .gzip:
                #expect(Array(first.prefix(2)) == [0x1F, 0x8B])
                #expect(Array(first[4..<8]) == [0, 0, 0, 0], "no timestamp in the gzip header")
            case .zstd:
                #expect(Array(first.prefix(4)) == [0x28, 0xB5, 0x2F, 0xFD])
            default:
                // GNU tar magic at offset 257 of the first header.
                #expect(Array(first[257..<265]) == Array("ustar  \0".utf8))
                #expect(first.count % 512 == 0)
            }
            // Different contents, different bytes.
            var changed = Self.files
            changed[0].contents = Array("v1.69.4\n".utf8)
            #expect(try LayerArchive.build(files: changed, compression: compression) != first)
        }

        @Test func gnuTarReadsIt() async throws {
            let directory = try LayerTestTools.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let layer = try LayerArchive.build(
                entries: [
                    .file("deckhouse/version", Array("v1.69.3\n".utf8)),
                    .symlink("deckhouse/current", target: "version"),
                    .whiteout("etc/old.conf"),
                    .opaqueDirectory("opt/app"),
                    .directory("var/empty"),
                ], compression: .gzip)
            try Data(layer).write(to: directory.appendingPathComponent("layer.tgz"))
            try await LayerTestTools.shell("tar -tvzf layer.tgz > listing && mkdir out && tar -xzf layer.tgz -C out", in: directory)
            let listing = try String(contentsOf: directory.appendingPathComponent("listing"), encoding: .utf8)
            let lines = listing.split(separator: "\n").map(String.init)
            let names = lines.map { $0.split(separator: " ").last.map(String.init) ?? "" }
            #expect(
                names == [
                    "deckhouse/", "deckhouse/version", "version", "etc/", "etc/.wh.old.conf", "opt/", "opt/app/",
                    "opt/app/.wh..wh..opq", "var/", "var/empty/",
                ])
            #expect(lines[0].hasPrefix("drwxr-xr-x 0/0"))
            #expect(lines[1].hasPrefix("-rw-r--r-- 0/0"))
            #expect(lines[1].contains("1970-01-01 00:00"))
            #expect(lines[2].hasPrefix("lrwxrwxrwx"))
            let version = try String(
                contentsOf: directory.appendingPathComponent("out/deckhouse/version"), encoding: .utf8)
            #expect(version == "v1.69.3\n")
        }

        @Test func parentDirectoriesOnceAndInOrder() throws {
            let layer = try LayerArchive.build(
                files: [("a/b/c", [1]), ("a/b/d", [2]), ("a/e", [3]), ("f", [4])], compression: .none)
            #expect(Self.tarNames(layer) == ["a/", "a/b/", "a/b/c", "a/b/d", "a/e", "f"])
        }

        @Test func invalidPathsAndCompression() {
            #expect(throws: LayerError.invalidPath("../x")) {
                try LayerArchive.build(files: [("../x", [])], compression: .none)
            }
            #expect(throws: LayerError.invalidPath("/")) {
                try LayerArchive.build(files: [("/", [])], compression: .gzip)
            }
            #expect(throws: LayerError.unsupportedCompression(.unknown)) {
                try LayerArchive.build(files: [("x", [])], compression: .unknown)
            }
        }

        @Test(arguments: [LayerCompression.gzip, .zstd])
        func fewMegabytesIsQuick(compression: LayerCompression) async throws {
            let big = LayerTestTools.noise(count: 4 << 20, seed: 7)
            let text = [UInt8](repeating: 0x61, count: 4 << 20)
            let clock = ContinuousClock()
            let start = clock.now
            let layer = try LayerArchive.build(files: [("big", big), ("text", text)], compression: compression)
            let elapsed = clock.now - start
            print("LayerArchive: 8 MiB \(compression) layer (\(layer.count) bytes) built in \(elapsed)")
            #expect(elapsed < .seconds(10), "8 MiB layer took \(elapsed)")
            let scan = try await LayerFiles.scan(
                layer: LayerChunks(layer, chunkSizes: [65537]), wanted: ["big", "text"])
            #expect(scan.files["big"] == big)
            #expect(scan.files["text"] == text)
        }

        /// Names of the entries of an uncompressed tar (ustar/GNU headers, short names only).
        static func tarNames(_ tar: [UInt8]) -> [String] {
            var names: [String] = []
            var offset = 0
            while offset + 512 <= tar.count {
                let header = tar[offset..<offset + 512]
                if header.allSatisfy({ $0 == 0 }) { break }
                let nameBytes = header.prefix(100).prefix { $0 != 0 }
                names.append(String(decoding: nameBytes, as: UTF8.self))
                let sizeText = String(decoding: tar[offset + 124..<offset + 135], as: UTF8.self)
                let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 8) ?? 0
                offset += 512 + (size + 511) / 512 * 512
            }
            return names
        }
    }
}
