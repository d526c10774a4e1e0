@testable import Bundle
import Foundation
import OCI
import Streams
import Testing
import TestSupport

@Suite("BundleIndex")
struct BundleIndexTests {
    typealias F = BundleIndexFixtures

    // MARK: - helpers

    /// Reads every image of every layout back through the index: each descriptor's manifest,
    /// its config and layer are found, and their bytes hash to their names. Also checks that
    /// `blobs(in:)` lists exactly those blobs. Returns (blobs read, blobs spanning files).
    @discardableResult
    private func checkContent(_ index: BundleIndex) throws -> (blobs: Int, spanning: Int) {
        var read = 0
        var spanning = 0
        for layout in index.layouts {
            var reachable = Set<Digest>()
            for descriptor in layout.descriptors {
                let location = try #require(index.blob(descriptor.digest, in: layout), "\(layout.path) \(descriptor.digest)")
                #expect(location.tar == layout.tar)
                #expect(location.size == descriptor.size)
                let bytes = try index.readSmall(location)
                #expect(SHA256.digest(of: bytes) == descriptor.digest)
                reachable.insert(descriptor.digest)
                guard case let .image(manifest) = try ManifestDocument.parse(bytes, contentType: descriptor.mediaType) else {
                    Issue.record("\(layout.path): \(descriptor.digest) is not an image manifest")
                    continue
                }
                for blob in [manifest.config] + manifest.layers {
                    let location = try #require(index.blob(blob.digest, in: layout), "\(layout.path) \(blob.digest)")
                    #expect(location.size == blob.size)
                    #expect(location.segments.reduce(0) { $0 + $1.length } == blob.size)
                    if location.segments.count > 1 { spanning += 1 }
                    let hasher = SHA256()
                    var total: Int64 = 0
                    try index.read(location, pieceSize: 333) { piece in
                        hasher.update(piece)
                        total += Int64(piece.count)
                    }
                    #expect(total == blob.size)
                    #expect(hasher.finalize() == blob.digest, "\(layout.path) \(blob.digest)")
                    reachable.insert(blob.digest)
                    read += 1
                }
            }
            #expect(Set(index.blobs(in: layout)) == reachable, "\(layout.path)")
        }
        return (read, spanning)
    }

    private func expectOpenFails(
        _ directory: String, sourceLocation: SourceLocation = #_sourceLocation, _ check: (BundleError) -> Bool
    ) {
        do {
            let index = try BundleIndex.open(directory: directory)
            Issue.record("expected an error, got \(index.layouts.count) layouts", sourceLocation: sourceLocation)
        } catch {
            #expect(check(error), "\(error)", sourceLocation: sourceLocation)
            #expect(error.isBadInput, "\(error)", sourceLocation: sourceLocation)
        }
    }

    private func scratch() throws -> String { try TarTestTools.scratch("bundle-index") }

    // MARK: - generations

    @Test func currentGenerationBundle() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.currentBundle(dir)
        try TarTestTools.write(dir + "/README.txt", Array("notes".utf8))
        // Leftovers of a pull that did finish this tar are ignored.
        try TarTestTools.write(dir + "/platform.tar.partial", [])
        try TarTestTools.write(dir + "/platform.tar.journal", [])

        let index = try BundleIndex.open(directory: dir)
        #expect(index.tars.map(\.name) == ["module-console.tar", "module-x.tar", "platform.tar", "security.tar"])
        for tar in index.tars {
            #expect(tar.files == [dir + "/" + tar.name])
            #expect(tar.fileSizes == [TarIO.fileSize(dir + "/" + tar.name) ?? -1])
            #expect(!tar.isChunked)
        }
        #expect(index.layouts.map(\.path) == F.currentPaths)
        #expect(index.ignoredFiles == ["README.txt"])

        let root = try #require(index.layout(at: ""))
        #expect(root.tar == "platform.tar")
        let written = F.indexJSON([
            F.tag(F.edition, "v1.69.3", F.image(1, layerSize: 2600)), F.digestRef(F.edition, F.image(2, layerSize: 2600)),
        ])
        #expect(root.descriptors == (try JSONDecoder().decode(ImageIndex.self, from: Data(written))).manifests)
        #expect(root.descriptors.count == 2)
        let tags = root.descriptors.compactMap { $0.annotations?["io.deckhouse.image.short_tag"] }
        #expect(Set(tags) == ["v1.69.3", F.image(2, layerSize: 2600).digest.hex])
        #expect(root.descriptors.allSatisfy { $0.annotations?["org.opencontainers.image.ref.name"]?.hasPrefix(F.edition) == true })

        let channels = try #require(index.layout(at: "release-channel"))
        #expect(channels.descriptors.map { $0.annotations?["io.deckhouse.image.short_tag"] } == ["stable", "v1.69.3"])
        #expect(channels.descriptors[0].digest == channels.descriptors[1].digest)

        let module = try #require(index.layout(at: "modules/x/release"))
        #expect(module.tar == "module-x.tar")
        #expect(module.directory == "modules/x/release")
        #expect(index.layout(at: "security/trivy-db")?.tar == "security.tar")

        let (blobs, spanning) = try checkContent(index)
        #expect(blobs > 20)
        #expect(spanning == 0)

        // totalBlobBytes: every blob entry of every layout.
        var expected: Int64 = 0
        for layout in index.layouts {
            for digest in index.blobs(in: layout) { expected += index.blob(digest, in: layout)?.size ?? 0 }
        }
        #expect(index.totalBlobBytes == expected)
        #expect(index.totalBlobCount == index.layouts.reduce(0) { $0 + index.blobs(in: $1).count })

        // A blob of another layout is not found in this one.
        let foreign = F.image(1, layerSize: 2600).digest
        #expect(index.blob(foreign, in: root) != nil)
        #expect(index.blob(foreign, in: module) == nil)

        // Trailing slashes do not matter; relative directories are made absolute.
        #expect(try BundleIndex.open(directory: dir + "/").tars.map(\.files) == index.tars.map(\.files))
        let cwd = FileManager.default.currentDirectoryPath
        #expect(BundleDirectory.absolute("bundle/") == (cwd == "/" ? "/bundle" : cwd + "/bundle"))
    }

    @Test func chunkedBundleBlobsSpanChunks() throws {
        let whole = try scratch()
        let chunked = try scratch()
        defer {
            TarTestTools.cleanup(whole)
            TarTestTools.cleanup(chunked)
        }
        try F.currentBundle(whole)
        try F.currentBundle(chunked, chunkSize: 1000)
        let a = try BundleIndex.open(directory: whole)
        let b = try BundleIndex.open(directory: chunked)

        #expect(b.tars.map(\.name) == a.tars.map(\.name))
        for (tarA, tarB) in zip(a.tars, b.tars) {
            #expect(tarB.isChunked)
            #expect(tarB.size == tarA.size)
            #expect(tarB.files.count == Int((tarA.size + 999) / 1000))
            #expect(tarB.files == (0..<tarB.files.count).map { ChunkedFileWriter.chunkPath(chunked + "/" + tarB.name, index: $0) })
            #expect(tarB.fileSizes.dropLast().allSatisfy { $0 == 1000 })
        }
        // The same layouts and descriptors either way.
        #expect(b.layouts.map(\.path) == a.layouts.map(\.path))
        #expect(b.layouts.map(\.descriptors) == a.layouts.map(\.descriptors))
        #expect(b.totalBlobBytes == a.totalBlobBytes)

        let (blobs, spanning) = try checkContent(b)
        #expect(blobs > 20)
        #expect(spanning > 5)

        // Segments: consecutive pieces, the first from the blob's offset, the next ones
        // from the start of the next chunk file.
        let trivy = try #require(b.layout(at: "security/trivy-db"))
        let layer = F.image(500, layerSize: 3100).blobs[1]
        let location = try #require(b.blob(layer.digest, in: trivy))
        #expect(location.digest == layer.digest)
        #expect(location.segments.count >= 4)
        let tar = try #require(b.tar(named: "security.tar"))
        let first = try #require(tar.files.firstIndex(of: location.segments[0].path))
        for (i, segment) in location.segments.enumerated() {
            #expect(segment.path == tar.files[first + i])
            if i > 0 { #expect(segment.offset == 0) }
            if i < location.segments.count - 1 { #expect(segment.offset + segment.length == 1000) }
        }
        // readSmall across chunks too.
        #expect(try b.readSmall(location) == layer.bytes)
    }

    @Test func chunkedTarWrittenByTarFileWriter() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        let entries = F.platform()
        let layout = try TarLayout(entries: entries.map { ($0.name, Int64($0.data.count)) })
        let writer = try TarFileWriter(finalPath: dir + "/platform.tar", layout: layout, chunkSize: 1000)
        for (i, entry) in entries.enumerated() { try writer.writeEntry(i, bytes: entry.data) }
        let files = try writer.commit()
        let index = try BundleIndex.open(directory: dir)
        #expect(index.tars.map(\.files) == [files])
        #expect(index.layouts.map(\.path) == ["", "install", "release-channel"])
        let (_, spanning) = try checkContent(index)
        #expect(spanning > 0)
    }

    @Test func olderModuleTarWithLayoutsAtItsRootIsRelocated() async throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "module-x.tar", F.module("x", root: ""))
        // An older module tar packed by GNU tar: "./" names and directory entries.
        let tree = dir + "/tree"
        try F.writeTree(tree, F.module("console", root: ""))
        try await F.gnuTar(dir + "/module-console.tar", tree: tree)
        try FileManager.default.removeItem(atPath: tree)
        let listed = try await TarTestTools.gnuList(dir + "/module-console.tar")
        #expect(listed.contains { $0.name == "./index.json" })

        let index = try BundleIndex.open(directory: dir)
        #expect(index.layouts.map(\.path) == [
            "modules/console", "modules/console/extra/y", "modules/console/release",
            "modules/x", "modules/x/extra/y", "modules/x/release",
        ])
        #expect(index.layouts.map(\.directory) == ["", "extra/y", "release", "", "extra/y", "release"])
        try checkContent(index)
    }

    @Test func olderSecurityTarIsRelocated() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "security.tar", F.security(root: ""))
        let index = try BundleIndex.open(directory: dir)
        #expect(index.layouts.map(\.path) == ["security/trivy-bdu", "security/trivy-db"])
        #expect(index.layouts.map(\.directory) == ["trivy-bdu", "trivy-db"])
        try checkContent(index)
    }

    @Test func wholeTreeSingleTarKeepsItsPaths() async throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        let tree = try scratch()
        defer { TarTestTools.cleanup(tree) }
        // The oldest generation: one tar with the whole nested tree, packed with "./" names,
        // index.json with the older index media type.
        let index = MediaType.ociIndex.rawValue
        try F.writeTree(tree, F.platform(mediaType: index) + F.module("x", root: "modules/x", mediaType: index)
            + F.security(root: "security"))
        try await F.gnuTar(dir + "/d8.tar", tree: tree)

        let bundle = try BundleIndex.open(directory: dir)
        #expect(bundle.tars.map(\.name) == ["d8.tar"])
        #expect(bundle.layouts.map(\.path) == [
            "", "install", "modules/x", "modules/x/extra/y", "modules/x/release", "release-channel",
            "security/trivy-bdu", "security/trivy-db",
        ])
        #expect(bundle.layouts.allSatisfy { $0.tar == "d8.tar" && $0.path == $0.directory })
        try checkContent(bundle)
    }

    @Test func dotSlashNamesWrittenDirectly() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        let entries = F.module("x", root: "modules/x").map { ("./" + $0.name, $0.data) }
        try F.writeTar(dir, "module-x.tar", entries)
        let index = try BundleIndex.open(directory: dir)
        #expect(index.layouts.map(\.path) == ["modules/x", "modules/x/extra/y", "modules/x/release"])
        try checkContent(index)
    }

    @Test(arguments: [MediaType.ociLayout.rawValue, MediaType.ociIndex.rawValue, nil] as [String?])
    func indexJSONMediaTypes(_ mediaType: String?) throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform(mediaType: mediaType))
        let index = try BundleIndex.open(directory: dir)
        #expect(index.layouts.map(\.path) == ["", "install", "release-channel"])
        #expect(index.layouts.map(\.descriptors.count) == [2, 1, 2])
        try checkContent(index)
    }

    @Test func indexJSONWithNullManifestsIsAnEmptyLayout() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "installer.tar", [
            ("installer/oci-layout", F.ociLayout),
            ("installer/index.json", Array(#"{"schemaVersion":2,"manifests":null}"#.utf8)),
        ])
        let index = try BundleIndex.open(directory: dir)
        #expect(index.layouts.map(\.path) == ["installer"])
        #expect(index.layouts[0].descriptors.isEmpty)
        #expect(index.totalBlobBytes == 0)
    }

    @Test func duplicateEntriesTheLaterWins() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        let image = F.image(7)
        let layer = image.blobs[1]
        let old = F.indexJSON([F.tag(F.edition + "/install", "old", image)])
        var entries = F.layout("install", [F.tag(F.edition + "/install", "v1", image)])
        entries.insert(("install/index.json", old), at: 0)
        entries.append(("install/blobs/sha256/\(layer.digest.hex)", layer.bytes))
        let tar = try F.writeTar(dir, "platform.tar", entries)
        let index = try BundleIndex.open(directory: dir)
        let layout = try #require(index.layout(at: "install"))
        #expect(layout.descriptors.map { $0.annotations?["io.deckhouse.image.short_tag"] } == ["v1"])
        // The blob location is the later copy's: the one just before the end blocks.
        let location = try #require(index.blob(layer.digest, in: layout))
        let end = Int64(tar.count) - 1024 - TarHeader.paddedSize(Int64(layer.bytes.count))
        #expect(location.segments.map(\.offset) == [end])
        try checkContent(index)
    }

    @Test func blobsAreReadWithLimits() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform())
        let index = try BundleIndex.open(directory: dir)
        let root = try #require(index.layout(at: ""))
        let layer = F.image(1, layerSize: 2600).blobs[1]
        let location = try #require(index.blob(layer.digest, in: root))
        #expect(throws: BundleError.self) { try index.readSmall(location, limit: 1000) }
        #expect(try index.readSmall(location, limit: 2600) == layer.bytes)
        // Not in the layout: nil; an unknown layout: nothing.
        #expect(index.blob(F.image(999).digest, in: root) == nil)
        let stranger = BundleIndex.Layout(tar: "platform.tar", path: "nowhere", directory: "nowhere", descriptors: [])
        #expect(index.blob(layer.digest, in: stranger) == nil)
        #expect(index.blobs(in: stranger).isEmpty)

        // A file that shrank after opening: the read says so, naming the file.
        let tar = try TarTestTools.read(dir + "/platform.tar")
        try TarTestTools.write(dir + "/platform.tar", Array(tar[0..<Int(location.segments[0].offset + 10)]))
        #expect { try index.readSmall(location) } throws: { error in
            guard case let .corrupt(file, detail)? = error as? BundleError else { return false }
            return file == dir + "/platform.tar" && detail.contains("shorter")
        }
    }

    @Test func segmentsMapOntoFiles() {
        let files = ["a", "b", "c"]
        let sizes: [Int64] = [10, 10, 5]
        func map(_ offset: Int64, _ length: Int64) -> [String] {
            BundleIndex.segments(offset: offset, length: length, files: files, sizes: sizes)
                .map { "\($0.path)@\($0.offset)+\($0.length)" }
        }
        #expect(map(0, 10) == ["a@0+10"])
        #expect(map(3, 4) == ["a@3+4"])
        #expect(map(8, 15) == ["a@8+2", "b@0+10", "c@0+3"])
        #expect(map(10, 5) == ["b@0+5"])
        #expect(map(20, 5) == ["c@0+5"])
        #expect(map(4, 0) == [])
        // An empty chunk file in between is skipped.
        #expect(BundleIndex.segments(offset: 8, length: 4, files: ["a", "e", "b"], sizes: [10, 0, 10]).map(\.path) == ["a", "b"])
    }

    // MARK: - errors

    @Test func missingChunkInTheMiddle() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform(), chunkSize: 1000)
        let missing = ChunkedFileWriter.chunkPath(dir + "/platform.tar", index: 2)
        try FileManager.default.removeItem(atPath: missing)
        expectOpenFails(dir) { $0 == .missingChunk(file: missing) }
        #expect(BundleError.missingChunk(file: missing).description.contains("platform.tar.0002.chunk"))
    }

    @Test func chunkSequenceNotStartingAtZero() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform(), chunkSize: 1000)
        let first = ChunkedFileWriter.chunkPath(dir + "/platform.tar", index: 0)
        try FileManager.default.removeItem(atPath: first)
        expectOpenFails(dir) { $0 == .missingChunk(file: first) }
    }

    @Test func missingLastChunk() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        let tar = try F.writeTar(dir, "platform.tar", F.platform(), chunkSize: 1000)
        let count = (tar.count + 999) / 1000
        // Drop the last two chunks: the end-of-archive blocks and some data are gone.
        for index in [count - 1, count - 2] {
            try FileManager.default.removeItem(atPath: ChunkedFileWriter.chunkPath(dir + "/platform.tar", index: index))
        }
        let next = String(format: "platform.tar.%04d.chunk", count - 2)
        expectOpenFails(dir) { error in
            guard case let .corrupt(file, detail) = error else { return false }
            return file == ChunkedFileWriter.chunkPath(dir + "/platform.tar", index: count - 3)
                && detail.contains("\(next) is missing")
        }
    }

    @Test func chunkCutShort() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform(), chunkSize: 1000)
        let cut = ChunkedFileWriter.chunkPath(dir + "/platform.tar", index: 3)
        let bytes = try TarTestTools.read(cut)
        try TarTestTools.write(cut, Array(bytes[0..<600]))
        expectOpenFails(dir) { error in
            guard case let .corrupt(file, detail) = error else { return false }
            return file == cut && detail.contains("it has 600 bytes") && detail.contains("cut short")
        }
    }

    @Test func tarAndItsChunksBothPresent() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform(), chunkSize: 1000)
        try F.writeTar(dir, "platform.tar", F.platform())
        expectOpenFails(dir) { $0 == .conflictingTarFiles(directory: dir, tar: "platform.tar") }
    }

    @Test func truncatedTar() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        let tar = try F.writeTar(dir, "module-x.tar", F.module("x", root: "modules/x"))
        try F.writeTar(dir, "platform.tar", F.platform())
        for length in [tar.count - 1024, tar.count / 2, 700] {
            try TarTestTools.write(dir + "/module-x.tar", Array(tar[0..<length]))
            expectOpenFails(dir) { error in
                guard case let .corrupt(file, _) = error else { return false }
                return file == dir + "/module-x.tar"
            }
        }
        try TarTestTools.write(dir + "/module-x.tar", [])
        expectOpenFails(dir) { error in
            guard case let .corrupt(file, _) = error else { return false }
            return file == dir + "/module-x.tar"
        }
    }

    /// Two damaged tars are named together, so one more copy fixes both.
    @Test func everyUnreadableTarIsNamedAtOnce() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        let module = try F.writeTar(dir, "module-x.tar", F.module("x", root: "modules/x"))
        let platform = try F.writeTar(dir, "platform.tar", F.platform())
        try TarTestTools.write(dir + "/module-x.tar", Array(module[0..<(module.count / 2)]))
        try TarTestTools.write(dir + "/platform.tar", Array(platform[0..<700]))
        expectOpenFails(dir) { error in
            guard case let .severalTars(errors) = error, errors.count == 2 else { return false }
            let files = errors.compactMap { error -> String? in
                if case let .corrupt(file, _) = error { return file }
                return nil
            }
            return files == [dir + "/module-x.tar", dir + "/platform.tar"]
                && error.description.hasPrefix("2 tars of the bundle cannot be read:\n  ")
        }
    }

    @Test func layoutWithoutOCILayoutFile() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform().filter { $0.name != "install/oci-layout" })
        expectOpenFails(dir) { $0 == .missingOCILayout(tar: "platform.tar", directory: "install") }
        #expect(BundleError.missingOCILayout(tar: "platform.tar", directory: "install").description
            .contains("platform.tar: directory 'install'"))
    }

    @Test func blobsWithoutIndexJSON() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "module-x.tar", F.module("x", root: "modules/x").filter { $0.name != "modules/x/release/index.json" })
        expectOpenFails(dir) { $0 == .missingLayoutIndex(tar: "module-x.tar", directory: "modules/x/release") }
    }

    @Test func damagedLayoutFiles() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        let cases: [(String, [UInt8], String)] = [
            ("index.json", Array("{not json".utf8), "index.json is not a valid OCI index"),
            ("index.json", Array(#"{"schemaVersion":2,"mediaType":"text/plain","manifests":[]}"#.utf8), "mediaType 'text/plain'"),
            ("index.json", Array(#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:12","size":1}]}"#.utf8),
             "index.json is not a valid OCI index"),
            ("oci-layout", Array("{}".utf8), "oci-layout is not an OCI layout file"),
        ]
        for (file, bytes, message) in cases {
            var entries = F.layout("install", [F.tag(F.edition + "/install", "v1", F.image(3))])
            entries = entries.map { $0.name == "install/" + file ? ($0.name, bytes) : $0 }
            try F.writeTar(dir, "platform.tar", entries)
            expectOpenFails(dir) { error in
                guard case let .corrupt(tarFile, detail) = error else { return false }
                return tarFile == dir + "/platform.tar" && detail.contains("install/") && detail.contains(message)
            }
        }
    }

    @Test func emptyDirectoryAndDirectoryWithoutTars() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        expectOpenFails(dir) { $0 == .noTars(directory: dir, found: []) }
        #expect(BundleError.noTars(directory: dir, found: []).description.contains("is empty"))
        try TarTestTools.write(dir + "/SHA256SUMS", [])
        try TarTestTools.write(dir + "/notes.txt", [])
        expectOpenFails(dir) { $0 == .noTars(directory: dir, found: ["SHA256SUMS", "notes.txt"]) }
        expectOpenFails(dir + "/does-not-exist") { error in
            guard case let .io(path, _, code) = error else { return false }
            return path == dir + "/does-not-exist" && code == ENOENT
        }
    }

    @Test func leftoverPartialOfAnUnfinishedPull() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform())
        try TarTestTools.write(dir + "/module-x.tar.partial", [1, 2, 3])
        expectOpenFails(dir) { $0 == .unfinishedTar(directory: dir, tar: "module-x.tar", leftover: "module-x.tar.partial") }
        #expect(BundleError.unfinishedTar(directory: dir, tar: "module-x.tar", leftover: "module-x.tar.partial")
            .description.contains("did not finish"))

        // Chunked: all partial, or renamed only in part when the run stopped.
        try FileManager.default.removeItem(atPath: dir + "/module-x.tar.partial")
        try TarTestTools.write(dir + "/module-x.tar.0000.chunk.partial", [1])
        try TarTestTools.write(dir + "/module-x.tar.journal", [1])
        expectOpenFails(dir) { $0 == .unfinishedTar(directory: dir, tar: "module-x.tar", leftover: "module-x.tar.0000.chunk.partial") }
        try F.writeTar(dir, "module-x.tar", F.module("x", root: "modules/x"), chunkSize: 1000)
        try FileManager.default.moveItem(atPath: dir + "/module-x.tar.0001.chunk", toPath: dir + "/module-x.tar.0001.chunk.partial")
        expectOpenFails(dir) { $0 == .unfinishedTar(directory: dir, tar: "module-x.tar", leftover: "module-x.tar.0001.chunk.partial") }
    }

    /// d8 writes `NAME.tar.tmp` (and `NAME.tar.NNNN.chunk.tmp`) and renames it when done: one
    /// left by a killed d8 pull is an unfinished tar too, not a file to pass over.
    @Test func leftoverTmpOfAnUnfinishedD8Pull() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform())
        try TarTestTools.write(dir + "/module-x.tar.tmp", [1, 2, 3])
        expectOpenFails(dir) { $0 == .unfinishedTar(directory: dir, tar: "module-x.tar", leftover: "module-x.tar.tmp") }
        try FileManager.default.removeItem(atPath: dir + "/module-x.tar.tmp")
        try F.writeTar(dir, "module-x.tar", F.module("x", root: "modules/x"), chunkSize: 1000)
        try FileManager.default.moveItem(atPath: dir + "/module-x.tar.0001.chunk", toPath: dir + "/module-x.tar.0001.chunk.tmp")
        expectOpenFails(dir) { $0 == .unfinishedTar(directory: dir, tar: "module-x.tar", leftover: "module-x.tar.0001.chunk.tmp") }
        // Some other .tmp is no tar's: passed over as before.
        try FileManager.default.moveItem(atPath: dir + "/module-x.tar.0001.chunk.tmp", toPath: dir + "/module-x.tar.0001.chunk")
        try TarTestTools.write(dir + "/notes.tmp", [1])
        #expect(try BundleIndex.open(directory: dir).tars.map(\.name).sorted() == ["module-x.tar", "platform.tar"])
    }

    @Test func journalWithoutTarIsAnUnfinishedPull() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform())
        try TarTestTools.write(dir + "/security.tar.journal", Array("plan\n".utf8))
        expectOpenFails(dir) { $0 == .unfinishedTar(directory: dir, tar: "security.tar", leftover: "security.tar.journal") }
    }

    @Test(arguments: ["../evil/index.json", "modules/../../x", "/etc/passwd"])
    func pathTraversalIsRefused(_ name: String) throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "platform.tar", F.platform() + [(name, [1, 2, 3])])
        expectOpenFails(dir) { error in
            guard case let .unsafeEntryName(tar, entry, _) = error else { return false }
            return tar == "platform.tar" && entry == name
        }
    }

    /// The same layout in two tars (as d8's package-versions.tar and package-<p>.tar carry
    /// packages/<p>/version) is one layout, united as d8 push unites them.
    @Test func sameLayoutInTwoTarsIsUnited() throws {
        let dir = try scratch()
        defer { TarTestTools.cleanup(dir) }
        try F.writeTar(dir, "module-x.tar", F.module("x", root: "modules/x"))
        try F.writeTar(dir, "d8.tar", F.platform() + F.module("x", root: "modules/x"))
        let index = try BundleIndex.open(directory: dir)
        let layout = try #require(index.layout(at: "modules/x"))
        #expect(layout.tars == ["d8.tar", "module-x.tar"])
        #expect(layout.descriptors.count == 2, "the same two descriptors in both tars count once")
        #expect(index.layouts.filter { $0.path == "modules/x" }.count == 1)
        for digest in index.blobs(in: layout) {
            #expect(index.blobCopies(digest, in: layout).map(\.tar) == ["d8.tar", "module-x.tar"])
            #expect(index.blob(digest, in: layout)?.tar == "d8.tar")
        }
        try checkContent(index)
    }

    @Test func badInputClassification() {
        #expect(BundleError.io(path: "/x", operation: "open", errno: ENOENT).isBadInput)
        #expect(!BundleError.io(path: "/x", operation: "read", errno: EIO).isBadInput)
        #expect(!BundleError.diskFull(path: "/x").isBadInput)
        #expect(BundleError.corrupt(file: "/x", detail: "y").isBadInput)
        #expect(BundleError.missingChunk(file: "/x").isBadInput)
    }

}
