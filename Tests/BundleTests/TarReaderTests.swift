import Bundle
import Foundation
import OCI
import Streams
import Testing
import TestSupport

@Suite("TarReader and Checksums")
struct TarReaderTests {
    private func sampleTar(_ dir: String) throws -> (path: String, entries: [(name: String, data: [UInt8])]) {
        let entries = TarTestTools.sampleEntries(count: 8)
        let path = dir + "/sample.tar"
        try TarTestTools.write(path, TarTestTools.sequentialTar(entries))
        return (path, entries)
    }

    @Test func readsATarMadeByGNUTarWithDirectoriesAndRecordPadding() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/src/sub", withIntermediateDirectories: true)
        try TarTestTools.write(dir + "/src/sub/file", [1, 2, 3])
        let made = try await TestProcess.run("tar", ["-cf", dir + "/gnu.tar", "-C", dir + "/src", "sub"])
        #expect(made.succeeded)
        var seen = [(String, Bool, Int64)]()
        try TarReader.forEachEntry(files: [dir + "/gnu.tar"]) { entry, _ in
            seen.append((entry.name, entry.isRegularFile, entry.size))
        }
        #expect(seen.map(\.0) == ["sub/", "sub/file"])
        #expect(seen.map(\.1) == [false, true])
        #expect(try TarReader.entries(files: [dir + "/gnu.tar"]).map(\.name) == ["sub/file"])
    }

    @Test func truncatedArchivesAreRejectedNamingTheFile() throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let (path, entries) = try sampleTar(dir)
        let tar = try TarTestTools.read(path)
        let layout = try TarLayout(entries: entries.map { ($0.name, Int64($0.data.count)) })

        // Cut inside the data of an entry.
        let inData = dir + "/in-data.tar"
        try TarTestTools.write(inData, Array(tar[0..<Int(layout.entries[5].dataOffset + 1000)]))
        #expect { try TarReader.entries(files: [inData]) } throws: { error in
            guard case let .corrupt(file, _)? = error as? BundleError else { return false }
            return file == inData
        }
        // Also when the caller reads the data.
        #expect(throws: BundleError.self) {
            try TarReader.forEachEntry(files: [inData]) { _, data in try data.read { _ in } }
        }
        // Cut exactly at an entry boundary: only the missing end blocks tell.
        let atBoundary = dir + "/at-boundary.tar"
        try TarTestTools.write(atBoundary, Array(tar[0..<Int(layout.entries[6].headerOffset)]))
        #expect { try TarReader.entries(files: [atBoundary]) } throws: { error in
            guard case let .corrupt(file, detail)? = error as? BundleError else { return false }
            return file == atBoundary && detail.contains("truncated")
        }
        // Cut inside a header.
        let inHeader = dir + "/in-header.tar"
        try TarTestTools.write(inHeader, Array(tar[0..<Int(layout.entries[6].headerOffset + 100)]))
        #expect(throws: BundleError.self) { try TarReader.entries(files: [inHeader]) }
    }

    @Test func nonTarInputIsRejected() throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let text = dir + "/notes.txt"
        try TarTestTools.write(text, Array(String(repeating: "this is not a tar archive\n", count: 100).utf8))
        #expect { try TarReader.entries(files: [text]) } throws: { error in
            guard case let .corrupt(file, detail)? = error as? BundleError else { return false }
            return file == text && detail.contains("not a tar")
        }
        let noise = dir + "/noise.bin"
        try TarTestTools.write(noise, TarTestTools.bytes(5000, seed: 3))
        #expect(throws: BundleError.self) { try TarReader.entries(files: [noise]) }
        let empty = dir + "/empty.tar"
        try TarTestTools.write(empty, [])
        #expect(throws: BundleError.self) { try TarReader.entries(files: [empty]) }
        #expect(throws: BundleError.self) { try TarReader.entries(files: [dir + "/absent.tar"]) }
    }

    @Test func chunkListsAreReadInSequenceAndAMissingChunkIsNamed() throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let (path, entries) = try sampleTar(dir)
        let tar = try TarTestTools.read(path)
        // Odd chunk sizes, so headers and data straddle files.
        var chunks = [String]()
        var offset = 0
        var size = 777
        while offset < tar.count {
            let end = min(tar.count, offset + size)
            let chunk = dir + String(format: "/sample.tar.%04d.chunk", chunks.count)
            try TarTestTools.write(chunk, Array(tar[offset..<end]))
            chunks.append(chunk)
            offset = end
            size = size * 7 % 300_007 + 1
        }
        var datas = [[UInt8]]()
        try TarReader.forEachEntry(files: chunks) { _, data in datas.append(try data.readAll()) }
        #expect(datas == entries.map(\.data))

        #expect(throws: BundleError.missingChunk(file: dir + "/sample.tar.0099.chunk")) {
            try TarReader.entries(files: chunks + [dir + "/sample.tar.0099.chunk"])
        }
        // Without its last chunk the archive is truncated.
        #expect(throws: BundleError.self) { try TarReader.entries(files: Array(chunks.dropLast())) }
    }

    @Test func dataHandlesAreValidOnlyOnceAndInTheirTurn() throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let (path, entries) = try sampleTar(dir)
        var kept: TarReader.EntryData?
        #expect(throws: BundleError.self) {
            try TarReader.forEachEntry(files: [path]) { entry, data in
                if kept == nil { kept = data; return }
                try kept?.read { _ in }
            }
        }
        #expect(throws: BundleError.self) {
            try TarReader.forEachEntry(files: [path]) { _, data in
                _ = try data.readAll()
                _ = try data.readAll()
            }
        }
        #expect(throws: BundleError.self) {
            try TarReader.forEachEntry(files: [path]) { _, data in _ = try data.readAll(limit: 100) }
        }
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try TarReader.forEachEntry(files: [path]) { _, _ in throw Stop() }
        }
        #expect(entries.count == 8)
    }

    @Test func sha256OfFilesMatchesLibcrypto() throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        var paths = [String]()
        var expected = [String]()
        for (i, size) in [0, 1, 4 << 20, (9 << 20) + 17].enumerated() {
            let data = TarTestTools.bytes(size, seed: UInt64(i))
            let path = dir + "/f\(i)"
            try TarTestTools.write(path, data)
            paths.append(path)
            expected.append(TestCrypto.sha256Hex(data))
        }
        #expect(try Checksums.sha256(ofFile: paths[3]).hex == expected[3])
        #expect(try Checksums.sha256(ofFiles: paths).map(\.hex) == expected)
        #expect(throws: BundleError.self) { try Checksums.sha256(ofFile: dir + "/absent") }
    }

    @Test func sha256SumsPassesCoreutilsCheck() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let names = ["platform.tar", "module-a.tar.0001.chunk", "module-a.tar.0000.chunk", "security.tar", "Zeta.tar"]
        for (i, name) in names.enumerated() {
            try TarTestTools.write(dir + "/" + name, TarTestTools.bytes(1000 * i + 3, seed: UInt64(i)))
        }
        // Relative names and paths inside the directory are both accepted.
        try Checksums.writeSHA256SUMS(directory: dir, files: [dir + "/platform.tar"] + names.dropFirst())
        #expect(try TarTestTools.list(dir).contains("SHA256SUMS"))
        #expect(!TarTestTools.exists(dir + "/SHA256SUMS.partial"))
        let text = String(decoding: try TarTestTools.read(dir + "/SHA256SUMS"), as: UTF8.self)
        let listed = text.split(separator: "\n").map { String($0.dropFirst(66)) }
        #expect(listed == ["Zeta.tar", "module-a.tar.0000.chunk", "module-a.tar.0001.chunk", "platform.tar", "security.tar"])

        let check = try await TestProcess.run("sh", ["-c", "cd \"$1\" && sha256sum -c SHA256SUMS", "sh", dir])
        #expect(check.succeeded, "\(check.stdoutString)\(check.stderrString)")

        // And it notices a damaged file.
        try TarTestTools.write(dir + "/security.tar", [0])
        let broken = try await TestProcess.run("sh", ["-c", "cd \"$1\" && sha256sum -c SHA256SUMS", "sh", dir])
        #expect(!broken.succeeded)

        #expect(throws: BundleError.self) { try Checksums.writeSHA256SUMS(directory: dir, files: ["../escape"]) }
    }
}
