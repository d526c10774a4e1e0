import Foundation

/// Damage done to a bundle on purpose, at a place that does not depend on the order of the
/// tar's entries (which follows their digests, so any change to the synthetic bytes moves it).
enum BundleDamage {
    /// The data range of the largest regular entry of a (ustar or pax) tar.
    static func largestEntry(in tar: Data) -> Range<Int>? {
        var offset = 0
        var largest: Range<Int>?
        while offset + 512 <= tar.count {
            let header = tar[tar.startIndex + offset ..< tar.startIndex + offset + 512]
            if header.allSatisfy({ $0 == 0 }) { break }
            let sizeField = header.dropFirst(124).prefix(12)
            let text = String(decoding: sizeField.filter { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }, as: UTF8.self)
            let size = Int(text, radix: 8) ?? 0
            let type = header[header.startIndex + 156]
            let data = offset + 512 ..< offset + 512 + size
            if type == UInt8(ascii: "0") || type == 0, size > (largest?.count ?? 0) { largest = data }
            offset += 512 + (size + 511) / 512 * 512
        }
        return largest
    }

    /// Flips one byte in the middle of the largest entry of the tar at `url` (the largest blob
    /// of a bundle tar), so that blob, and nothing else, fails its digest.
    static func flipByteInLargestEntry(of url: URL) throws {
        var bytes = try Data(contentsOf: url)
        guard let entry = largestEntry(in: bytes) else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: url.path])
        }
        bytes[entry.lowerBound + entry.count / 2] ^= 0x55
        try bytes.write(to: url)
    }
}
