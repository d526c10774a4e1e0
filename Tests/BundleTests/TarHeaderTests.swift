import Bundle
import Foundation
import Testing
import TestSupport

@Suite("TarHeader and TarLayout")
struct TarHeaderTests {
    private func field(_ block: [UInt8], _ range: Range<Int>) -> [UInt8] { Array(block[range]) }
    private func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func fieldsMatchGoGNUFormat() {
        let header = TarHeader.encode(name: "index.json", size: 1234)
        #expect(header.count == 512)
        #expect(field(header, 0..<11) == ascii("index.json") + [0])
        #expect(field(header, 100..<108) == ascii("0000777") + [0])
        #expect(field(header, 108..<116) == ascii("0000000") + [0])
        #expect(field(header, 116..<124) == ascii("0000000") + [0])
        #expect(field(header, 124..<136) == ascii("00000002322") + [0])  // 1234 in octal
        #expect(field(header, 136..<148) == ascii("00000000000") + [0])
        #expect(header[156] == UInt8(ascii: "0"))
        #expect(field(header, 257..<265) == ascii("ustar  ") + [0])
        #expect(field(header, 265..<329).allSatisfy { $0 == 0 })  // uname, gname
        #expect(field(header, 329..<337) == ascii("0000000") + [0])
        #expect(field(header, 337..<345) == ascii("0000000") + [0])
        #expect(field(header, 345..<512).allSatisfy { $0 == 0 })
        // Checksum: six octal digits, NUL, space; the sum with the field as spaces.
        #expect(header[154] == 0 && header[155] == UInt8(ascii: " "))
        var sum = 0
        for (i, byte) in header.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(byte) }
        #expect(Int(String(decoding: header[148..<154], as: UTF8.self), radix: 8) == sum)
    }

    @Test(arguments: [1, 99, 100, 101, 250, 511, 512, 1000])
    func headerSizes(nameLength: Int) {
        let name = String(repeating: "d/", count: nameLength / 2) + (nameLength % 2 == 1 ? "f" : "")
        let trimmed = name.hasSuffix("/") ? String(name.dropLast()) + "g" : name
        #expect(trimmed.utf8.count == nameLength)
        let header = TarHeader.encode(name: trimmed, size: 1)
        #expect(header.count % 512 == 0)
        #expect(Int64(header.count) == TarHeader.headerSize(name: trimmed))
        if nameLength <= 100 {
            #expect(header.count == 512)
        } else {
            #expect(header.count == 1024 + Int(TarHeader.paddedSize(Int64(nameLength + 1))))
            #expect(field(header, 0..<14) == ascii("././@LongLink") + [0])
            #expect(header[156] == UInt8(ascii: "L"))
            #expect(field(header, 512..<(512 + nameLength)) == ascii(trimmed))
            #expect(header[512 + nameLength] == 0)
            // The main header carries the first 100 bytes, never ending in '/'.
            let main = Array(header.suffix(512))
            #expect(main[156] == UInt8(ascii: "0"))
            #expect(main[99] != UInt8(ascii: "/"))
        }
    }

    @Test func paddedSizes() {
        #expect(TarHeader.paddedSize(0) == 0)
        #expect(TarHeader.paddedSize(1) == 512)
        #expect(TarHeader.paddedSize(512) == 512)
        #expect(TarHeader.paddedSize(513) == 1024)
        #expect(TarHeader.blockSize == 512)
    }

    @Test func hugeSizeUsesBase256() {
        let size: Int64 = 8 << 30  // exactly 8 GiB: the first size octal cannot hold
        let header = TarHeader.encode(name: "big", size: size)
        #expect(header[124] == 0x80)
        var value: Int64 = 0
        for byte in header[125..<136] { value = value << 8 | Int64(byte) }
        #expect(value == size)
        let below = TarHeader.encode(name: "big", size: size - 1)
        #expect(field(below, 124..<136) == ascii("77777777777") + [0])
    }

    /// GNU tar lists and extracts headers of names around the 100-byte limit, and libarchive
    /// (TarReader) agrees.
    @Test func gnuTarAndLibarchiveReadNamesAroundTheLimit() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        var entries = [(name: String, data: [UInt8])]()
        for length in [99, 100, 101, 250] {
            let prefix = "layout/blobs/sha256/"
            let suffix = "-\(length)"
            let name = prefix + String(repeating: "a", count: length - prefix.count - suffix.count) + suffix
            #expect(name.utf8.count == length)
            entries.append((name, TarTestTools.bytes(length * 7, seed: UInt64(length))))
        }
        // A name whose 100th byte is '/', and an empty file.
        entries.append((String(repeating: "q", count: 99) + "/tail-of-a-long-name", [1, 2, 3]))
        entries.append(("empty", []))
        let tarPath = dir + "/test.tar"
        try TarTestTools.write(tarPath, TarTestTools.sequentialTar(entries))

        let listed = try await TarTestTools.gnuList(tarPath)
        #expect(listed.map(\.name) == entries.map(\.name))
        #expect(listed.map(\.size) == entries.map { Int64($0.data.count) })
        #expect(listed.allSatisfy { $0.mode == "-rwxrwxrwx" && $0.owner == "0/0" })

        let out = dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let extract = try await TestProcess.run("tar", ["-xf", tarPath, "-C", out])
        #expect(extract.succeeded, "\(extract.stderrString)")
        for entry in entries {
            #expect(try TarTestTools.read(out + "/" + entry.name) == entry.data)
        }
        let modified = try FileManager.default.attributesOfItem(atPath: out + "/" + entries[0].name)[.modificationDate] as? Date
        #expect(modified == Date(timeIntervalSince1970: 0))

        var seen = [(String, [UInt8])]()
        try TarReader.forEachEntry(files: [tarPath]) { entry, data in
            seen.append((entry.name, try data.readAll()))
        }
        #expect(seen.map(\.0) == entries.map(\.name))
        #expect(seen.map(\.1) == entries.map(\.data))
    }

    /// An 8 GiB+ entry: the header alone, in a sparse file, is read by libarchive (through
    /// TarReader, which skips the data without reading it) and by GNU tar.
    @Test func libarchiveReadsBase256Size() async throws {
        let dir = try TarTestTools.scratch()
        defer { TarTestTools.cleanup(dir) }
        let size: Int64 = (8 << 30) + 5
        let layout = try TarLayout(entries: [("huge.bin", size), ("after", 3)])
        let path = dir + "/huge.tar"
        let writer = try ChunkedFileWriter(finalPath: path, totalSize: layout.totalSize, chunkSize: nil, resume: false)
        for (index, data) in [(0, [UInt8]()), (1, [UInt8]([7, 8, 9]))] {
            let entry = layout.entries[index]
            let block = TarHeader.encode(name: entry.name, size: entry.size) + data
            try block.withUnsafeBytes { try writer.write($0, at: entry.headerOffset) }
        }
        let final = try writer.commit()
        #expect(final == [path])
        let entries = try TarReader.entries(files: [path])
        #expect(entries.map(\.name) == ["huge.bin", "after"])
        #expect(entries.map(\.size) == [size, 3])

        let listed = try await TarTestTools.gnuList(path)
        #expect(listed.map(\.size) == [size, 3])
    }

    @Test func layoutOffsets() throws {
        let long = String(repeating: "l", count: 150)
        let layout = try TarLayout(entries: [("a", 0), ("b", 1), ("c", 512), (long, 513), ("d", 10)])
        let offsets = layout.entries.map { [$0.headerOffset, $0.dataOffset] }
        #expect(offsets == [[0, 512], [512, 1024], [1536, 2048], [2560, 4096], [5120, 5632]])
        #expect(layout.totalSize == 5632 + 512 + 1024)
        #expect(layout.entries[3].endOffset == 5120)
        #expect(layout.index(of: "c") == 2)
        #expect(layout.index(of: "zz") == nil)
        let tar = TarTestTools.sequentialTar(layout.entries.map { ($0.name, [UInt8](repeating: 1, count: Int($0.size))) })
        #expect(Int64(tar.count) == layout.totalSize)
    }

    @Test func layoutFingerprintFollowsNamesSizesAndOrder() throws {
        let a = try TarLayout(entries: [("a", 1), ("b", 2)])
        #expect(a.fingerprint == (try TarLayout(entries: [("a", 1), ("b", 2)])).fingerprint)
        #expect(a.fingerprint.count == 64)
        #expect(a.fingerprint != (try TarLayout(entries: [("b", 2), ("a", 1)])).fingerprint)
        #expect(a.fingerprint != (try TarLayout(entries: [("a", 1), ("b", 3)])).fingerprint)
        #expect(a.fingerprint != (try TarLayout(entries: [("a", 12), ("b", 2)])).fingerprint)
    }

    @Test(arguments: ["", "/abs", "a/../b", "..", "a/..", "./a", "a//b", "dir/", "nul\u{0}x"])
    func layoutRejectsUnsafeNames(name: String) {
        #expect(throws: BundleError.self) { try TarLayout(entries: [(name, 1)]) }
    }

    @Test func layoutRejectsDuplicatesAndNegativeSizes() {
        #expect(throws: BundleError.duplicateEntry(name: "x")) { try TarLayout(entries: [("x", 1), ("y", 1), ("x", 2)]) }
        #expect(throws: BundleError.self) { try TarLayout(entries: [("x", -1)]) }
        // Dots inside names are fine.
        #expect(throws: Never.self) { try TarLayout(entries: [("a..b/.c/d.", 1)]) }
    }
}
