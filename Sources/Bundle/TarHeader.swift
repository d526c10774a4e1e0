/// Tar header blocks of regular files, byte for byte as Go's `archive/tar` writes them with
/// `Format: tar.FormatGNU` (which is what `d8 mirror` uses): mode 0777, uid/gid 0, mtime 0,
/// empty owner names, GNU magic, `././@LongLink` entries for names over 100 bytes and
/// base-256 sizes from 8 GiB on. Producing the same bytes as d8 keeps bundles interchangeable
/// and lets the whole layout of a tar be computed before any data exists.
public enum TarHeader {
    /// Tar works in 512-byte blocks: headers are one block, data is padded to whole blocks.
    public static let blockSize = 512

    /// Longest name that fits the header's name field; longer ones need a GNU long-name entry.
    public static let nameFieldSize = 100

    /// `size` rounded up to whole blocks: the bytes an entry's data occupies in the tar.
    public static func paddedSize(_ size: Int64) -> Int64 {
        let block = Int64(blockSize)
        return (size + block - 1) / block * block
    }

    /// Bytes of header (including a GNU long-name entry when needed) that precede the data
    /// of an entry named `name`; equal to `encode(name:size:).count` without building it.
    public static func headerSize(name: String) -> Int64 {
        let length = name.utf8.count
        guard length > nameFieldSize else { return Int64(blockSize) }
        return 2 * Int64(blockSize) + paddedSize(Int64(length + 1))
    }

    /// The header block(s) of a regular file `name` of `size` bytes; a multiple of 512 bytes.
    public static func encode(name: String, size: Int64) -> [UInt8] {
        let nameBytes = Array(name.utf8)
        var out = [UInt8]()
        out.reserveCapacity(Int(headerSize(name: name)))
        if nameBytes.count > nameFieldSize {
            // GNU long name: a pseudo-entry whose data is the full name plus NUL.
            var longLink = [UInt8](repeating: 0, count: blockSize)
            putString(&longLink, at: 0, width: 100, Array("././@LongLink".utf8))
            putOctal(&longLink, at: 100, width: 8, 0)   // mode
            putOctal(&longLink, at: 108, width: 8, 0)   // uid
            putOctal(&longLink, at: 116, width: 8, 0)   // gid
            putOctal(&longLink, at: 124, width: 12, Int64(nameBytes.count + 1))
            putOctal(&longLink, at: 136, width: 12, 0)  // mtime
            longLink[156] = UInt8(ascii: "L")
            finish(&longLink)
            out += longLink
            out += nameBytes
            out.append(0)
            out += [UInt8](repeating: 0, count: Int(paddedSize(Int64(nameBytes.count + 1))) - nameBytes.count - 1)
        }
        var header = [UInt8](repeating: 0, count: blockSize)
        putString(&header, at: 0, width: 100, nameBytes)
        putOctal(&header, at: 100, width: 8, 0o777)    // mode
        putOctal(&header, at: 108, width: 8, 0)        // uid
        putOctal(&header, at: 116, width: 8, 0)        // gid
        putNumeric(&header, at: 124, width: 12, size)  // size
        putOctal(&header, at: 136, width: 12, 0)       // mtime
        header[156] = UInt8(ascii: "0")                // regular file
        // linkname (157), uname (265), gname (297) stay empty.
        putOctal(&header, at: 329, width: 8, 0)        // devmajor
        putOctal(&header, at: 337, width: 8, 0)        // devminor
        finish(&header)
        out += header
        return out
    }

    /// Sets the GNU magic and version, then the checksum.
    private static func finish(_ block: inout [UInt8]) {
        let magic = Array("ustar ".utf8) + [UInt8(ascii: " "), 0]
        for (i, byte) in magic.enumerated() { block[257 + i] = byte }
        // The checksum is the unsigned sum of the block with its own field read as spaces.
        var sum: Int64 = 0
        for (i, byte) in block.enumerated() {
            sum += (148..<156).contains(i) ? 0x20 : Int64(byte)
        }
        putOctal(&block, at: 148, width: 7, sum)  // six digits and NUL
        block[155] = UInt8(ascii: " ")
    }

    /// Copies `bytes` into a field, NUL-terminated when shorter than the field, truncated
    /// when longer; a truncated field never ends with '/' (as Go does, so no reader takes a
    /// file for a directory).
    private static func putString(_ block: inout [UInt8], at offset: Int, width: Int, _ bytes: [UInt8]) {
        let count = min(bytes.count, width)
        for i in 0..<count { block[offset + i] = bytes[i] }
        if bytes.count < width { block[offset + bytes.count] = 0 }
        if bytes.count > width && block[offset + width - 1] == UInt8(ascii: "/") {
            var end = width
            while end > 0 && block[offset + end - 1] == UInt8(ascii: "/") { end -= 1 }
            block[offset + end] = 0
        }
    }

    /// Zero-padded octal with a trailing NUL: width-1 digits.
    private static func putOctal(_ block: inout [UInt8], at offset: Int, width: Int, _ value: Int64) {
        var digits = [UInt8](repeating: UInt8(ascii: "0"), count: width - 1)
        var rest = value
        var i = width - 2
        while rest > 0 && i >= 0 {
            digits[i] = UInt8(ascii: "0") + UInt8(rest & 7)
            rest >>= 3
            i -= 1
        }
        for (j, digit) in digits.enumerated() { block[offset + j] = digit }
        block[offset + width - 1] = 0
    }

    /// Octal when the value fits (width-1 digits), else GNU base-256: big-endian binary with
    /// the high bit of the first byte set. For the size field that switch happens at 8 GiB.
    private static func putNumeric(_ block: inout [UInt8], at offset: Int, width: Int, _ value: Int64) {
        let octalBits = (width - 1) * 3
        if value >= 0 && (octalBits >= 63 || value < (Int64(1) << octalBits)) {
            putOctal(&block, at: offset, width: width, value)
            return
        }
        var rest = UInt64(bitPattern: value)
        for i in stride(from: width - 1, through: 0, by: -1) {
            block[offset + i] = UInt8(truncatingIfNeeded: rest)
            rest >>= 8
        }
        block[offset] |= 0x80
    }
}
