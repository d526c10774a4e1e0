import Bundle
import Foundation
import OCI
import Testing
import TestSupport

extension LayerTests {
    @Suite struct Files {
        static let noise = LayerTestTools.noise(count: 70_000, seed: 3)

        static func sampleLayer(_ compression: LayerCompression) throws -> [UInt8] {
            try LayerArchive.build(
                files: [
                    ("deckhouse/version", Array("v1.69.3\n".utf8)),
                    ("deckhouse/modules/images_digests.json", Array(#"{"m":{"i":"sha256:ab"}}"#.utf8)),
                    ("noise.bin", noise),
                    ("empty", []),
                    ("unwanted/other", Array(repeating: 7, count: 5000)),
                ], compression: compression)
        }

        @Test(arguments: [LayerCompression.none, .gzip, .zstd], [1, 7, 4096, 65537])
        func roundTrip(compression: LayerCompression, chunkSize: Int) async throws {
            let layer = try Self.sampleLayer(compression)
            let scan = try await LayerFiles.scan(
                layer: LayerChunks(layer, chunkSizes: [chunkSize]),
                wanted: ["/deckhouse/version", "./deckhouse/modules/images_digests.json", "noise.bin", "empty", "missing"])
            #expect(scan.files.count == 4)
            #expect(scan.files["deckhouse/version"] == Array("v1.69.3\n".utf8))
            #expect(scan.files["deckhouse/modules/images_digests.json"] == Array(#"{"m":{"i":"sha256:ab"}}"#.utf8))
            #expect(scan.files["noise.bin"] == Self.noise)
            #expect(scan.files["empty"] == [])
            #expect(scan.deleted.isEmpty)
            #expect(scan.shadowed.isEmpty)
        }

        @Test(arguments: [LayerCompression.gzip, .zstd])
        func mixedChunkSizes(compression: LayerCompression) async throws {
            let layer = try Self.sampleLayer(compression)
            let scan = try await LayerFiles.scan(
                layer: LayerChunks(layer, chunkSizes: [1, 7, 4096, 65537, 3, 100_000]), wanted: ["noise.bin"])
            #expect(scan.files["noise.bin"] == Self.noise)
        }

        @Test func normalization() {
            #expect(LayerFiles.normalize("/a/b") == "a/b")
            #expect(LayerFiles.normalize("./a//./b/") == "a/b")
            #expect(LayerFiles.normalize("a") == "a")
            #expect(LayerFiles.normalize("/") == "")
        }

        @Test func gnuTarLayerWithDotSlashNamesAndHardLinks() async throws {
            let directory = try LayerTestTools.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            try await LayerTestTools.shell(
                """
                mkdir -p root/deckhouse && printf 'v1.2.3' > root/deckhouse/version && \
                ln root/deckhouse/version root/deckhouse/linked && \
                ln -s version root/deckhouse/soft && \
                cd root && tar -czf ../layer.tgz ./deckhouse/version ./deckhouse/linked ./deckhouse/soft
                """, in: directory)
            let layer = [UInt8](try Data(contentsOf: directory.appendingPathComponent("layer.tgz")))

            let both = try await LayerFiles.scan(
                layer: LayerChunks(layer, chunkSizes: [13]),
                wanted: ["deckhouse/version", "deckhouse/linked", "deckhouse/soft"])
            #expect(both.files == ["deckhouse/version": Array("v1.2.3".utf8), "deckhouse/linked": Array("v1.2.3".utf8)])
            #expect(both.shadowed == ["deckhouse/soft"])
            #expect(both.symlinks == ["deckhouse/soft": "version"])

            await #expect(throws: LayerError.unresolvedHardLink(path: "deckhouse/linked", target: "deckhouse/version")) {
                try await LayerFiles.scan(layer: LayerChunks(layer, chunkSizes: [4096]), wanted: ["deckhouse/linked"])
            }
        }

        @Test func whiteoutsAndOpaqueDirectories() async throws {
            let layer = try LayerArchive.build(
                entries: [
                    .whiteout("etc/old"),
                    .whiteout("gone"),
                    .opaqueDirectory("opt"),
                    .file("opt/keep", [1]),
                    .file("kept", [2]),
                    .whiteout("kept"),  // a whiteout does not hide its own layer's file
                ], compression: .gzip)
            let scan = try await LayerFiles.scan(
                layer: LayerChunks(layer, chunkSizes: [7]),
                wanted: ["etc/old", "etc/old/sub/file", "gone", "opt/a", "opt/deep/b", "opt/keep", "kept", "etc/other", "optional"])
            #expect(scan.files == ["opt/keep": [1], "kept": [2]])
            #expect(scan.deleted == ["etc/old", "etc/old/sub/file", "gone", "opt/a", "opt/deep/b"])
        }

        @Test func laterDuplicateEntryWinsUnlessStoppingEarly() async throws {
            let layer = try LayerArchive.build(
                files: [("dup", [1]), ("filler", Array(repeating: 0, count: 3000)), ("dup", [2])], compression: .zstd)
            let full = try await LayerFiles.scan(layer: LayerChunks(layer, chunkSizes: [100]), wanted: ["dup"])
            #expect(full.files["dup"] == [2])
            let early = try await LayerFiles.scan(
                layer: LayerChunks(layer, chunkSizes: [100]), wanted: ["dup"], stopWhenFound: true)
            #expect(early.files["dup"] == [1])
        }

        @Test func emptyInputIsAnEmptyLayer() async throws {
            let scan = try await LayerFiles.scan(layer: LayerChunks([], chunkSizes: [1]), wanted: ["x"])
            #expect(scan == LayerScan())
            let emptyTar = try LayerArchive.build(entries: [], compression: .gzip)
            #expect(try await LayerFiles.scan(layer: LayerChunks(emptyTar, chunkSizes: [5]), wanted: ["x"]) == LayerScan())
        }

        // MARK: - Failures

        static let garbage: [String: [UInt8]] = [
            "text": Array("hello, this is not a layer".utf8),
            "noise": LayerTestTools.noise(count: 100_000, seed: 9),
            "three bytes": [UInt8](repeating: 0x1F, count: 3),
            "gzip magic then noise": [0x1F, 0x8B, 8, 0] + LayerTestTools.noise(count: 2000, seed: 10),
            "zstd magic then noise": [0x28, 0xB5, 0x2F, 0xFD] + LayerTestTools.noise(count: 2000, seed: 11),
            "zero blocks only, no tar header": [UInt8](repeating: 0, count: 100),
        ]

        @Test(arguments: garbage.keys.sorted())
        func garbageIsMalformed(name: String) async {
            let input = Self.garbage[name] ?? []
            await #expect {
                try await LayerFiles.scan(layer: LayerChunks(input, chunkSizes: [1000]), wanted: ["x"])
            } throws: { error in
                guard case LayerError.malformedLayer(let message) = error else { return false }
                return !message.isEmpty
            }
        }

        @Test(arguments: [LayerCompression.none, .gzip, .zstd])
        func truncatedLayerIsMalformed(compression: LayerCompression) async throws {
            let layer = try Self.sampleLayer(compression)
            let truncated = Array(layer.prefix(layer.count / 2))
            await #expect {
                try await LayerFiles.scan(layer: LayerChunks(truncated, chunkSizes: [4096]), wanted: ["zzz"])
            } throws: { error in
                guard case LayerError.malformedLayer = error else { return false }
                return true
            }
        }

        /// zstd layers are decoded by Streams' ZstdDecoder: its reason reaches the error, not a bare read failure.
        @Test func truncatedZstdLayerSaysWhy() async throws {
            let layer = try Self.sampleLayer(.zstd)
            let truncated = Array(layer.prefix(layer.count / 2))
            await #expect {
                try await LayerFiles.scan(layer: LayerChunks(truncated, chunkSizes: [3, 4096]), wanted: ["zzz"])
            } throws: { error in
                guard case LayerError.malformedLayer(let message) = error else { return false }
                return message.contains("zstd stream ends inside a frame") && message.contains("truncated")
            }
        }

        @Test(arguments: [0, 1, 5000, 40_000])
        func producerErrorSurfaces(failAfter: Int) async throws {
            let layer = try Self.sampleLayer(.gzip)
            await #expect(throws: LayerInjectedFailure(id: failAfter)) {
                try await LayerFiles.scan(
                    layer: LayerScriptedChunks(bytes: layer, chunkSize: 1000, failAfter: failAfter), wanted: ["noise.bin"])
            }
        }

        @Test func fileLargerThanTheLimit() async throws {
            let layer = try LayerArchive.build(
                files: [("small", [1]), ("big/file", Array(repeating: 1, count: 2000))], compression: .gzip)
            await #expect(throws: LayerError.fileTooLarge(path: "big/file", size: 2000, limit: 1000)) {
                try await LayerFiles.scan(
                    layer: LayerChunks(layer, chunkSizes: [512]), wanted: ["big/file"], maxFileSize: 1000)
            }
            let error = LayerError.fileTooLarge(path: "big/file", size: 2000, limit: 1000)
            #expect(error.description.contains("big/file"))
            // An unwanted big file is no problem.
            let scan = try await LayerFiles.scan(
                layer: LayerChunks(layer, chunkSizes: [512]), wanted: ["small"], maxFileSize: 1000)
            #expect(scan.files == ["small": [1]])
        }

        // MARK: - Stopping and cancellation

        @Test func stopWhenFoundStopsAnEndlessProducer() async throws {
            let layer = try LayerArchive.build(files: [("first", [9])], compression: .none)
            // The tar without its end: the bytes never end.
            let body = Array(layer.prefix(1024))
            let scan = try await LayerFiles.scan(
                layer: LayerScriptedChunks(bytes: body, chunkSize: 100, endless: true), wanted: ["first"], stopWhenFound: true)
            #expect(scan.files == ["first": [9]])
        }

        @Test func cancellationEndsAStalledScan() async throws {
            let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
            let layer = try LayerArchive.build(files: [("a", [1])], compression: .gzip)
            continuation.yield(Array(layer.prefix(10)))  // then nothing more, never finished
            let task = Task { try await LayerFiles.scan(layer: stream, wanted: ["a"]) }
            try await Task.sleep(for: .milliseconds(50))
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
            continuation.finish()
        }

        @Test func manyScansLeakNoThreads() async throws {
            let layer = try Self.sampleLayer(.gzip)
            let garbage = Array("not a layer at all".utf8)
            let threadsBefore = try #require(LayerTestTools.procStatus("Threads"))
            #expect(threadsBefore > 0)
            for round in 0..<200 {
                switch round % 4 {
                case 0:
                    let scan = try await LayerFiles.scan(layer: LayerChunks(layer, chunkSizes: [8192]), wanted: ["empty"])
                    #expect(scan.files["empty"] == [])
                case 1:
                    _ = try? await LayerFiles.scan(layer: LayerChunks(garbage, chunkSizes: [3]), wanted: ["x"])
                case 2:
                    _ = try? await LayerFiles.scan(
                        layer: LayerScriptedChunks(bytes: layer, chunkSize: 700, failAfter: 2100), wanted: ["x"])
                default:
                    let scan = try await LayerFiles.scan(
                        layer: LayerScriptedChunks(bytes: layer, chunkSize: 333, endless: true), wanted: ["deckhouse/version"],
                        stopWhenFound: true)
                    #expect(scan.files.count == 1)
                }
            }
            // The reader threads exit right after handing back their result.
            var threadsAfter = LayerTestTools.procStatus("Threads") ?? 0
            for _ in 0..<100 where threadsAfter > threadsBefore {
                try await Task.sleep(for: .milliseconds(20))
                threadsAfter = LayerTestTools.procStatus("Threads") ?? 0
            }
            print("threads: \(threadsBefore) before 200 scans, \(threadsAfter) after")
            #expect(threadsAfter < threadsBefore + 20, "threads: \(threadsBefore) before, \(threadsAfter) after")
        }

        // MARK: - Memory

        /// The scan runs in a process of its own (`dkp-dev layer-scan`): the peak RSS of this
        /// test process would count whatever the suites running beside it hold.
        @Test func bigLayerIsStreamedInBoundedMemory() async throws {
            let directory = try LayerTestTools.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            // 64 MiB of incompressible data before the small wanted file.
            try await LayerTestTools.shell(
                """
                mkdir root && head -c 67108864 /dev/urandom > root/big.bin && printf 'found' > root/small.txt && \
                tar -C root -cf - big.bin small.txt | gzip -1 > layer.tgz
                """, in: directory)
            let path = directory.appendingPathComponent("layer.tgz").path

            struct Report: Decodable { var files: [String: Int]; var peakGrowthKiB: Int }
            func scan(_ arguments: [String]) async throws -> Report {
                let tool = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("dkp-dev").path
                let run = try await TestProcess.run(
                    FileManager.default.isExecutableFile(atPath: tool) ? tool : RepoPaths.root.appendingPathComponent(".build/debug/dkp-dev").path,
                    ["layer-scan", path] + arguments)
                try #require(run.succeeded, "dkp-dev layer-scan: \(run.stderrString)")
                return try JSONDecoder().decode(Report.self, from: Data(run.stdout))
            }

            let small = try await scan(["--wanted", "small.txt"])
            print("big layer scan (small file wanted): peak RSS grew by \(small.peakGrowthKiB) KiB")
            #expect(small.files == ["small.txt": 5])
            #expect(small.peakGrowthKiB < 16 << 10, "peak RSS grew by \(small.peakGrowthKiB) KiB while scanning a 64 MiB layer")

            // Control: the measurement does see a layer's worth of memory when the big file is wanted.
            let whole = try await scan(["--wanted", "big.bin", "--max-file-size", "\(80 << 20)"])
            print("big layer scan (control, the 64 MiB file wanted): peak RSS grew by \(whole.peakGrowthKiB) KiB")
            #expect(whole.files == ["big.bin": 64 << 20])
            #expect(whole.peakGrowthKiB > 60 << 10, "control: peak RSS grew by \(whole.peakGrowthKiB) KiB holding a 64 MiB file")
        }
    }

    @Suite struct ReadFiles {
        /// Layers bottom to top.
        static func image() throws -> [[UInt8]] {
            [
                try LayerArchive.build(
                    files: [
                        ("a", Array("a0".utf8)), ("b", Array("b0".utf8)), ("c", Array("c0".utf8)),
                        ("opt/x", Array("x0".utf8)), ("opt/y", Array("y0".utf8)), ("link", Array("l0".utf8)),
                        ("bottom-only", Array("bottom".utf8)),
                    ], compression: .gzip),
                try LayerArchive.build(
                    entries: [.file("a", Array("a1".utf8)), .whiteout("b"), .file("opt/y", Array("y1".utf8))],
                    compression: .zstd),
                try LayerArchive.build(
                    entries: [
                        .opaqueDirectory("opt"), .file("top", Array("top".utf8)), .symlink("link", target: "a"),
                    ], compression: .none),
            ]
        }

        static func open(_ layers: [[UInt8]], counter: LayerOpenCounter) -> @Sendable (Int) async throws -> LayerChunks {
            { index in
                counter.record(index)
                return LayerChunks(layers[index], chunkSizes: [7, 4096])
            }
        }

        @Test func laterLayersWinAndWhiteoutsHide() async throws {
            let layers = try Self.image()
            let counter = LayerOpenCounter()
            let files = try await LayerFiles.readFiles(
                ["a", "/b", "c", "opt/x", "opt/y", "top", "link", "nowhere"], layerCount: layers.count,
                openLayer: Self.open(layers, counter: counter))
            #expect(
                files == [
                    "a": Array("a1".utf8),  // the middle layer overrides the bottom one
                    "c": Array("c0".utf8),
                    "top": Array("top".utf8),
                ])
            // b is whited out in the middle layer, opt/* hidden by the opaque top dir, link is a symlink.
            #expect(counter.recorded == [2, 1, 0])
        }

        @Test func topLayerFileOpensOneLayer() async throws {
            let layers = try Self.image()
            let counter = LayerOpenCounter()
            let files = try await LayerFiles.readFiles(
                ["top"], layerCount: layers.count, openLayer: Self.open(layers, counter: counter))
            #expect(files == ["top": Array("top".utf8)])
            #expect(counter.recorded == [2])
        }

        @Test func deletedPathsStopTheDescentToo() async throws {
            let layers = try Self.image()
            let counter = LayerOpenCounter()
            let files = try await LayerFiles.readFiles(
                ["opt/x", "a", "b"], layerCount: layers.count, openLayer: Self.open(layers, counter: counter))
            #expect(files == ["a": Array("a1".utf8)])
            #expect(counter.recorded == [2, 1])  // opt/x: opaque in 2; a, b: decided in 1
        }

        @Test func missingPathsVisitEveryLayer() async throws {
            let layers = try Self.image()
            let counter = LayerOpenCounter()
            let files = try await LayerFiles.readFiles(
                ["bottom-only", "nowhere"], layerCount: layers.count, openLayer: Self.open(layers, counter: counter))
            #expect(files == ["bottom-only": Array("bottom".utf8)])
            #expect(counter.count == 3)
            let none = try await LayerFiles.readFiles(
                [], layerCount: layers.count, openLayer: Self.open(layers, counter: counter))
            #expect(none.isEmpty)
            #expect(counter.count == 3)
        }

        @Test func openErrorsSurface() async throws {
            await #expect(throws: LayerInjectedFailure(id: 42)) {
                try await LayerFiles.readFiles(["a"], layerCount: 2) { _ -> LayerChunks in
                    throw LayerInjectedFailure(id: 42)
                }
            }
        }
    }
}
