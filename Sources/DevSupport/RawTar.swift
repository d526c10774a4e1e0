import Bundle
import Foundation

/// Tars built byte by byte, for fixtures: regular entries as d8 writes them (`TarHeader`), and
/// raw header blocks of any type, link name and size field, which no well-behaved writer
/// produces (the hostile tars of testdata/ and the fuzz regression tests).
public enum RawTar {
    public typealias Entry = (name: String, data: [UInt8])

    /// `entries` as a GNU tar (d8's bytes), then the raw blocks of `tail`, then the
    /// end-of-archive marker.
    public static func tar(_ entries: [Entry], tail: [UInt8] = []) -> [UInt8] {
        var tar = [UInt8]()
        for entry in entries {
            tar += TarHeader.encode(name: entry.name, size: Int64(entry.data.count))
            tar += entry.data
            tar += padding(entry.data.count)
        }
        return tar + tail + [UInt8](repeating: 0, count: 2 * TarHeader.blockSize)
    }

    /// Writes `bytes` to `path`, or, with a chunk size, as the chunk files `path.0000.chunk`,
    /// ... that concatenated are `bytes` (as `--images-bundle-chunk-size` cuts a tar). The
    /// paths written, in order.
    @discardableResult
    public static func write(_ bytes: [UInt8], to path: String, chunkSize: Int? = nil) throws -> [String] {
        guard let chunkSize else {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return [path]
        }
        var paths: [String] = []
        for (index, start) in stride(from: 0, to: bytes.count, by: chunkSize).enumerated() {
            let chunk = ChunkedFileWriter.chunkPath(path, index: index)
            try Data(bytes[start..<min(bytes.count, start + chunkSize)]).write(to: URL(fileURLWithPath: chunk))
            paths.append(chunk)
        }
        return paths
    }

    /// Zeros from `count` bytes up to the next whole block.
    public static func padding(_ count: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: Int(TarHeader.paddedSize(Int64(count))) - count)
    }

    /// One header block with the given name bytes (cut at 100), type flag, link name and raw
    /// 12-byte size field, and a correct checksum, so a reader looks at the content rather
    /// than refusing the block outright.
    public static func header(name: [UInt8], type: UInt8 = UInt8(ascii: "0"), link: String = "", sizeField: [UInt8]) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: TarHeader.blockSize)
        put(&block, 0, name.prefix(100))
        put(&block, 100, Array("0000777\u{0}".utf8))
        put(&block, 108, Array("0000000\u{0}".utf8))
        put(&block, 116, Array("0000000\u{0}".utf8))
        put(&block, 124, sizeField.prefix(12))
        put(&block, 136, Array("00000000000\u{0}".utf8))
        block[156] = type
        put(&block, 157, Array(link.utf8).prefix(100))
        put(&block, 257, Array("ustar ".utf8) + [0x20, 0])
        var sum = 0
        for (i, byte) in block.enumerated() { sum += (148..<156).contains(i) ? 0x20 : Int(byte) }
        let octal = Array(String(sum, radix: 8).utf8)
        put(&block, 148, [UInt8](repeating: UInt8(ascii: "0"), count: 6 - octal.count) + octal + [0, 0x20])
        return block
    }

    /// A header of a regular file whose size field is `size` in octal.
    public static func header(name: String, type: UInt8 = UInt8(ascii: "0"), link: String = "", size: Int = 0) -> [UInt8] {
        header(name: Array(name.utf8), type: type, link: link, sizeField: octalSize(size))
    }

    /// A size field of eleven octal digits and a NUL.
    public static func octalSize(_ size: Int) -> [UInt8] {
        let digits = Array(String(size, radix: 8).utf8)
        return [UInt8](repeating: UInt8(ascii: "0"), count: max(0, 11 - digits.count)) + digits + [0]
    }

    /// A directory entry (`name` ends with `/`), as GNU tar writes for `tar -C dir .`.
    public static func directory(_ name: String) -> [UInt8] {
        header(name: name, type: UInt8(ascii: "5"))
    }

    private static func put<C: Collection>(_ block: inout [UInt8], _ offset: Int, _ bytes: C) where C.Element == UInt8 {
        for (i, byte) in bytes.enumerated() { block[offset + i] = byte }
    }
}
