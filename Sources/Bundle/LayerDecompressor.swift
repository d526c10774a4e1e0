#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CArchive
import OCI
import Streams

/// Decompresses a layer of the bundle as it streams out of the tar (gzip: libarchive's raw
/// format with its gzip filter; zstd: Streams' `ZstdDecoder`; one reused buffer each way) and
/// hashes the result: the layer's diff_id, which its image config lists in `rootfs.diff_ids`.
/// Nothing is held whole in memory and nothing is written.
public enum LayerDecompressor {
    public struct Result: Sendable, Equatable {
        /// SHA-256 of the decompressed bytes.
        public let diffID: Digest
        /// Number of decompressed bytes.
        public let size: Int64
    }

    static let inputSize = 1 << 20
    static let outputSize = 1 << 20

    /// The diff_id of the layer at `location`, compressed as `compression` says (`.gzip` or
    /// `.zstd`; `.none` hashes the bytes as they are). Throws `LayerError.malformedLayer`
    /// naming what is wrong when the bytes are not of that compression or the stream is
    /// damaged or cut short, `BundleError` when the tar cannot be read.
    public static func diffID(of location: BlobLocation, compression: LayerCompression) throws -> Result {
        guard let archive = archive_read_new() else {
            throw LayerError.malformedLayer("libarchive could not allocate a reader")
        }
        defer { archive_read_free(archive) }
        let expected: Int32
        switch compression {
        case .gzip:
            archive_read_support_filter_gzip(archive)
            expected = ARCHIVE_FILTER_GZIP
        case .zstd:
            return try zstdDiffID(of: location)
        case .none:
            expected = ARCHIVE_FILTER_NONE
        case .unknown:
            throw LayerError.unsupportedCompression(compression)
        }
        archive_read_support_format_raw(archive)
        archive_read_support_format_empty(archive)

        let source = SegmentSource(location: location)
        return try withExtendedLifetime(source) {
            let client = Unmanaged.passUnretained(source).toOpaque()
            guard archive_read_open(archive, client, nil, segmentReadCallback, nil) == ARCHIVE_OK else {
                throw source.failure ?? LayerError.malformedLayer(message(archive))
            }
            var entry: OpaquePointer?
            let status = archive_read_next_header(archive, &entry)
            if let failure = source.failure { throw failure }
            let hasher = SHA256()
            if status == ARCHIVE_EOF {
                // No data at all: only an empty uncompressed layer is that.
                guard compression == .none else {
                    throw LayerError.malformedLayer("the layer is empty, not \(compression.rawValue) data")
                }
                return Result(diffID: hasher.finalize(), size: 0)
            }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN else {
                throw LayerError.malformedLayer(message(archive))
            }
            let filter = archive_filter_code(archive, 0)
            guard filter == expected else {
                throw LayerError.malformedLayer(
                    "its media type says \(compression.rawValue) but its bytes are not \(compression.rawValue) data"
                        + " (they start \(source.firstBytes))")
            }
            let output = UnsafeMutableRawBufferPointer.allocate(byteCount: outputSize, alignment: 16)
            defer { output.deallocate() }
            var size: Int64 = 0
            while true {
                let n = archive_read_data(archive, output.baseAddress, output.count)
                if let failure = source.failure { throw failure }
                if n == 0 { break }
                guard n > 0 else {
                    throw LayerError.malformedLayer("decompressing failed after \(size) bytes: \(message(archive))")
                }
                hasher.update(UnsafeRawBufferPointer(rebasing: output[0..<n]))
                size += Int64(n)
            }
            return Result(diffID: hasher.finalize(), size: size)
        }
    }

    /// zstd layers go through Streams' `ZstdDecoder` rather than libarchive's zstd filter: the
    /// same libzstd without libarchive's copy into the caller's buffer, measured a few percent
    /// faster (README, Performance). The errors read as libarchive's path words them.
    private static func zstdDiffID(of location: BlobLocation) throws -> Result {
        let source = SegmentSource(location: location)
        let decoder = try ZstdDecoder(outputSize: ZstdDecoder.recommendedOutputSize)
        let hasher = SHA256()
        var piece: UnsafeRawPointer?
        var first = true
        while true {
            let count = source.next(&piece)
            if let failure = source.failure { throw failure }
            guard count > 0, let piece else { break }
            let bytes = UnsafeRawBufferPointer(start: piece, count: count)
            // A first piece shorter than a magic number (a tiny chunk segment) is left to libzstd.
            if first, count >= 4, !ZstdDecoder.looksLikeZstd(bytes) {
                throw LayerError.malformedLayer(
                    "its media type says zstd but its bytes are not zstd data (they start \(source.firstBytes))")
            }
            first = false
            do {
                try decoder.decode(bytes) { hasher.update($0) }
            } catch let error as ZstdError {
                throw LayerError.malformedLayer("decompressing failed after \(decoder.decodedBytes) bytes: \(error)")
            }
        }
        if first { throw LayerError.malformedLayer("the layer is empty, not zstd data") }
        do {
            try decoder.finish()
        } catch let error as ZstdError {
            throw LayerError.malformedLayer("decompressing failed after \(decoder.decodedBytes) bytes: \(error)")
        }
        return Result(diffID: hasher.finalize(), size: decoder.decodedBytes)
    }

    private static func message(_ archive: OpaquePointer) -> String {
        if let text = archive_error_string(archive) { return String(cString: text) }
        return "libarchive error \(archive_errno(archive))"
    }
}

/// The compressed bytes of a blob, out of its segments (`BlobSegmentReader`), in the shape
/// libarchive's read callback wants: a pointer and a count, -1 with the failure kept.
private final class SegmentSource {
    let reader: BlobSegmentReader
    var failure: (any Error)?
    var firstBytes = ""

    init(location: BlobLocation) { reader = BlobSegmentReader(location, pieceSize: LayerDecompressor.inputSize) }

    func next(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        let piece: UnsafeRawBufferPointer?
        do { piece = try reader.next() } catch {
            failure = error
            return -1
        }
        guard let piece, let base = piece.baseAddress else { return 0 }
        if firstBytes.isEmpty {
            firstBytes = piece.prefix(4).map { byte in
                let hex = String(byte, radix: 16)
                return hex.count == 1 ? "0" + hex : hex
            }.joined(separator: " ")
        }
        out?.pointee = base
        return piece.count
    }
}

private func segmentReadCallback(
    _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> la_ssize_t {
    guard let context else { return -1 }
    return la_ssize_t(Unmanaged<SegmentSource>.fromOpaque(context).takeUnretainedValue().next(out))
}
