@testable import Bundle
import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("TarFileWriter and ChunkedFileWriter")
struct TarFileWriterTests {
    private func layout(_ entries: [(name: String, data: [UInt8])]) throws -> TarLayout {
        try TarLayout(entries: entries.map { ($0.name, Int64($0.data.count)) })
    }

    @Test func concurrentWriteMatchesSequentialTarAndGNUTar() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let entries = TarTestTools.sampleEntries()
        let layout = try layout(entries)
        let path = dir + "/platform.tar"
        let writer = try TarFileWriter(finalPath: path, layout: layout, chunkSize: nil)
        #expect(writer.completed.isEmpty)
        try await TarTestTools.writeConcurrently(writer, entries)

        // Before commit: only partial files and the journal, nothing under a final name.
        #expect(try TarTestTools.list(dir) == ["platform.tar.journal", "platform.tar.partial"])
        let paths = try writer.commit()
        #expect(paths == [path])
        #expect(try TarTestTools.list(dir) == ["platform.tar"])

        let tar = try TarTestTools.read(path)
        #expect(tar == TarTestTools.sequentialTar(entries))
        #expect(Int64(tar.count) == layout.totalSize)

        let listed = try await TarTestTools.gnuList(path)
        #expect(listed.map(\.name) == entries.map(\.name))
        #expect(listed.map(\.size) == entries.map { Int64($0.data.count) })

        let out = dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let extract = try await TestProcess.run("tar", ["-xf", path, "-C", out])
        #expect(extract.succeeded, "\(extract.stderrString)")
        for entry in entries {
            #expect(try TarTestTools.read(out + "/" + entry.name) == entry.data, "\(entry.name)")
        }

        // libarchive agrees, and its offsets are the planned ones.
        var index = 0
        try TarReader.forEachEntry(files: [path]) { entry, data in
            let planned = layout.entries[index]
            #expect(entry.name == planned.name)
            #expect(entry.size == planned.size)
            #expect(entry.isRegularFile)
            #expect(entry.headerOffset == planned.headerOffset)
            #expect(entry.dataOffset == planned.dataOffset)
            if index % 2 == 0 {
                let bytes = try data.readAll()
                #expect(bytes == entries[index].data)
            }
            index += 1
        }
        #expect(index == entries.count)
    }

    @Test func chunkedWriteConcatenatesToTheSameTar() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let entries = TarTestTools.sampleEntries()
        let layout = try layout(entries)
        let path = dir + "/module-x.tar"
        let writer = try TarFileWriter(finalPath: path, layout: layout, chunkSize: 100_000)
        let chunkCount = Int((layout.totalSize + 99_999) / 100_000)
        #expect(writer.partialPaths.count == chunkCount)
        #expect(writer.finalPaths.first == path + ".0000.chunk")
        #expect(writer.partialPaths.first == path + ".0000.chunk.partial")
        try await TarTestTools.writeConcurrently(writer, entries)
        #expect(try TarTestTools.list(dir).allSatisfy { $0.hasSuffix(".partial") || $0.hasSuffix(".journal") })
        let chunks = try writer.commit()
        #expect(chunks == (0..<chunkCount).map { path + String(format: ".%04d.chunk", $0) })
        #expect(try TarTestTools.list(dir) == chunks.map { ($0 as NSString).lastPathComponent })
        for chunk in chunks.dropLast() { #expect(try TarTestTools.read(chunk).count == 100_000) }

        let joined = dir + "/joined.tar"
        let cat = try await TestProcess.run("sh", ["-c", "cat \"$@\" > \(joined)", "sh"] + chunks)
        #expect(cat.succeeded)
        #expect(try TarTestTools.read(joined) == TarTestTools.sequentialTar(entries))

        var seen = [String]()
        var contents = [[UInt8]]()
        try TarReader.forEachEntry(files: chunks) { entry, data in
            seen.append(entry.name)
            var bytes = [UInt8]()
            try data.read { bytes += $0 }
            contents.append(bytes)
        }
        #expect(seen == entries.map(\.name))
        #expect(contents == entries.map(\.data))
        #expect(try TarReader.entries(files: chunks).map(\.size) == entries.map { Int64($0.data.count) })
    }

    @Test(arguments: [nil, 100_000] as [Int64?])
    func resumeAfterAKillWritesOnlyTheRest(chunkSize: Int64?) async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let entries = TarTestTools.sampleEntries()
        let layout = try layout(entries)
        let path = dir + "/platform.tar"
        let firstHalf = Set(entries.indices.filter { $0 % 2 == 0 })
        do {
            let writer = try TarFileWriter(finalPath: path, layout: layout, chunkSize: chunkSize)
            try await TarTestTools.writeConcurrently(writer, entries, only: firstHalf)
            // An entry half-streamed when the run died: not complete.
            let stream = writer.entryStream(5)
            try stream.append(Array(entries[5].data.prefix(1000)))
            // The writer is dropped here without commit, as a killed process would leave it.
        }
        #expect(!TarTestTools.exists(path))
        let resumed = try TarFileWriter(finalPath: path, layout: layout, chunkSize: chunkSize)
        #expect(resumed.completed == firstHalf)
        #expect(resumed.isComplete(0) && !resumed.isComplete(1) && !resumed.isComplete(5))
        try await TarTestTools.writeConcurrently(resumed, entries, only: Set(entries.indices).subtracting(firstHalf))
        let files = try resumed.commit()
        var tar = [UInt8]()
        for file in files { tar += try TarTestTools.read(file) }
        #expect(tar == TarTestTools.sequentialTar(entries))
        #expect(!TarTestTools.exists(path + ".journal"))
    }

    /// Many small entries (a pull's manifests) written, synced and journaled as one batch:
    /// a new writer for the same plan finds every one complete, and the tar is byte for byte
    /// the sequential one, including an entry above the one-buffer size (index.json).
    @Test(arguments: [nil, 100_000] as [Int64?])
    func aBatchOfSmallEntriesIsJournaledOnce(chunkSize: Int64?) async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        var entries = TarTestTools.sampleEntries(count: 30)
        entries.append((name: "index.json", data: TarTestTools.bytes(200_000, seed: 5)))
        let layout = try layout(entries)
        let path = dir + "/platform.tar"
        let batch = entries.indices.filter { $0 % 3 != 0 }
        var asked: [Int] = []
        do {
            let writer = try TarFileWriter(finalPath: path, layout: layout, chunkSize: chunkSize)
            try writer.writeEntries(batch) { index in
                asked.append(index)
                return entries[index].data
            }
            #expect(writer.completed == Set(batch))
        }
        #expect(asked == batch)
        // One journal line per entry, after the plan's key.
        let journal = String(decoding: try TarTestTools.read(path + ".journal"), as: UTF8.self)
        #expect(journal.split(separator: "\n").dropFirst().map { Int($0) } == batch.map { Optional($0) })
        let resumed = try TarFileWriter(finalPath: path, layout: layout, chunkSize: chunkSize)
        #expect(resumed.completed == Set(batch))
        try await TarTestTools.writeConcurrently(resumed, entries, only: Set(entries.indices).subtracting(batch))
        var tar = [UInt8]()
        for file in try resumed.commit() { tar += try TarTestTools.read(file) }
        #expect(tar == TarTestTools.sequentialTar(entries))
    }

    @Test func aChangedLayoutDiscardsTheJournal() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let entries = TarTestTools.sampleEntries(count: 12)
        let path = dir + "/platform.tar"
        do {
            let writer = try TarFileWriter(finalPath: path, layout: try layout(entries), chunkSize: nil)
            try await TarTestTools.writeConcurrently(writer, entries, only: [0, 1, 2, 3])
        }
        var changed = entries
        changed[7].data = TarTestTools.bytes(777, seed: 99)  // a different size: a different plan
        let writer = try TarFileWriter(finalPath: path, layout: try layout(changed), chunkSize: nil)
        #expect(writer.completed.isEmpty)
        try await TarTestTools.writeConcurrently(writer, changed)
        try writer.commit()
        #expect(try TarTestTools.read(path) == TarTestTools.sequentialTar(changed))

        // The same plan cut into chunks is another plan too.
        do {
            let writer = try TarFileWriter(finalPath: path, layout: try layout(entries), chunkSize: nil)
            try await TarTestTools.writeConcurrently(writer, entries, only: [0, 1])
        }
        let chunked = try TarFileWriter(finalPath: path, layout: try layout(entries), chunkSize: 50_000)
        #expect(chunked.completed.isEmpty)
    }

    @Test func aTornJournalLineAndALostChunkAreNotTrusted() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let entries = TarTestTools.sampleEntries(count: 20)
        let layout = try layout(entries)
        let path = dir + "/t.tar"
        do {
            let writer = try TarFileWriter(finalPath: path, layout: layout, chunkSize: 100_000)
            try await TarTestTools.writeConcurrently(writer, entries, only: Set(0..<10))
        }
        // A line cut by a crash ("15" of "150\n") must not be read as entry 15.
        let journal = path + ".journal"
        let handle = try #require(FileHandle(forWritingAtPath: journal))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("15".utf8))
        try handle.close()
        // Lose the chunk that holds entry 5 (1 MiB + 3 bytes, spanning several chunks).
        let entry = layout.entries[5]
        let lostChunk = Int(entry.dataOffset / 100_000) + 1
        try FileManager.default.removeItem(atPath: ChunkedFileWriter.chunkPath(path, index: lostChunk) + ".partial")

        let writer = try TarFileWriter(finalPath: path, layout: layout, chunkSize: 100_000)
        let completed = writer.completed
        #expect(!completed.contains(5))
        #expect(!completed.contains(15))
        #expect(completed.isSubset(of: Set(0..<10)))
        #expect(completed.contains(0) && completed.contains(9))
        try await TarTestTools.writeConcurrently(writer, entries, only: Set(entries.indices).subtracting(completed))
        var tar = [UInt8]()
        for file in try writer.commit() { tar += try TarTestTools.read(file) }
        #expect(tar == TarTestTools.sequentialTar(entries))
    }

    /// A run killed inside `commit` (some chunks renamed, the rest still partial, the journal
    /// still there) resumes with every entry kept and commits the same tar.
    @Test func aRunKilledInsideCommitKeepsItsEntries() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let entries = TarTestTools.sampleEntries(count: 20)
        let layout = try layout(entries)
        let path = dir + "/t.tar"
        do {
            let writer = try TarFileWriter(finalPath: path, layout: layout, chunkSize: 100_000)
            try await TarTestTools.writeConcurrently(writer, entries, only: Set(entries.indices))
        }
        // What commit's rename loop leaves when killed after the first two chunks.
        for index in 0..<2 {
            let chunk = ChunkedFileWriter.chunkPath(path, index: index)
            #expect(rename(chunk + ".partial", chunk) == 0)
        }
        let resumed = try TarFileWriter(finalPath: path, layout: layout, chunkSize: 100_000)
        #expect(resumed.completed == Set(entries.indices), "no entry is downloaded again")
        var tar = [UInt8]()
        for file in try resumed.commit() { tar += try TarTestTools.read(file) }
        #expect(tar == TarTestTools.sequentialTar(entries))
    }

    @Test func streamOverflowShortFinishAndIncompleteCommitThrow() throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let layout = try TarLayout(entries: [("a", 10), ("b", 3)])
        let writer = try TarFileWriter(finalPath: dir + "/x.tar", layout: layout, chunkSize: nil)
        let stream = writer.entryStream(0)
        try stream.append([UInt8](repeating: 1, count: 6))
        #expect(throws: BundleError.entryOverflow(file: dir + "/x.tar", entry: "a", size: 10, attempted: 11)) {
            try stream.append([UInt8](repeating: 1, count: 5))
        }
        #expect(stream.bytesWritten == 6)
        #expect(throws: BundleError.entrySizeMismatch(file: dir + "/x.tar", entry: "a", expected: 10, actual: 6)) {
            try stream.finish()
        }
        #expect(!writer.isComplete(0))
        // A retried download starts over.
        stream.reset()
        try stream.append([UInt8](repeating: 2, count: 10))
        try stream.finish()
        #expect(writer.isComplete(0))

        #expect(throws: BundleError.self) { try writer.writeEntry(1, bytes: [1, 2]) }
        #expect(throws: BundleError.self) { try writer.writeEntry(2, bytes: [1, 2, 3]) }
        #expect(throws: BundleError.self) { try writer.entryStream(-1).append([1]) }
        #expect(throws: BundleError.incomplete(file: dir + "/x.tar", missing: 1, firstMissing: "b")) {
            try writer.commit()
        }
        #expect(!TarTestTools.exists(dir + "/x.tar"))
        try writer.writeEntry(1, bytes: [1, 2, 3])
        try writer.commit()
        #expect(throws: BundleError.alreadyCommitted(file: dir + "/x.tar")) { try writer.writeEntry(1, bytes: [1, 2, 3]) }
        #expect(try TarReader.entries(files: [dir + "/x.tar"]).map(\.name) == ["a", "b"])
    }

    @Test func chunkedWritesStraddleBoundaries() throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let path = dir + "/raw"
        let writer = try ChunkedFileWriter(finalPath: path, totalSize: 25, chunkSize: 10, resume: false)
        #expect(writer.partialPaths == [0, 1, 2].map { ChunkedFileWriter.chunkPath(path, index: $0) + ".partial" })
        let data = (0..<25).map { UInt8($0 + 1) }
        // One write across all three chunks, another overwriting the middle.
        try data.withUnsafeBytes { try writer.write($0, at: 0) }
        try [UInt8](repeating: 0xEE, count: 4).withUnsafeBytes { try writer.write($0, at: 8) }
        #expect(throws: BundleError.self) { try [UInt8](repeating: 1, count: 2).withUnsafeBytes { try writer.write($0, at: 24) } }
        #expect(throws: BundleError.self) { try [UInt8](repeating: 1, count: 1).withUnsafeBytes { try writer.write($0, at: -1) } }
        try writer.sync()
        let final = try writer.commit()
        var expected = data
        for i in 8..<12 { expected[i] = 0xEE }
        #expect(try TarTestTools.read(final[0]) == Array(expected[0..<10]))
        #expect(try TarTestTools.read(final[1]) == Array(expected[10..<20]))
        #expect(try TarTestTools.read(final[2]) == Array(expected[20..<25]))
    }

    @Test func commitRemovesStaleChunksOfAnOlderBundle() throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let path = dir + "/platform.tar"
        for stale in [path, path + ".0003.chunk", path + ".0012.chunk", path + ".0007.chunk.partial", path + ".partial"] {
            try TarTestTools.write(stale, [1])
        }
        try TarTestTools.write(dir + "/other.tar.0005.chunk", [1])
        let layout = try TarLayout(entries: [("a", 1)])
        let writer = try TarFileWriter(finalPath: path, layout: layout, chunkSize: 1000)
        #expect(!TarTestTools.exists(path + ".0007.chunk.partial"))
        #expect(!TarTestTools.exists(path + ".partial"))
        try writer.writeEntry(0, bytes: [9])
        try writer.commit()
        #expect(try TarTestTools.list(dir) == [
            "other.tar.0005.chunk", "platform.tar.0000.chunk", "platform.tar.0001.chunk", "platform.tar.0002.chunk",
        ])
    }

    @Test func diskFullIsAClearActionableError() {
        let error = BundleError.write(path: "/b/platform.tar.partial", operation: "write", errno: ENOSPC)
        #expect(error == .diskFull(path: "/b/platform.tar.partial"))
        #expect(error.description.contains("/b/platform.tar.partial"))
        #expect(error.description.contains("free space"))
        #expect(error.description.contains("resumes"))
        #expect(BundleError.write(path: "p", operation: "write", errno: EIO) == .io(path: "p", operation: "write", errno: EIO))
    }
}
