import OCI
import Streams

/// One contiguous piece of a blob inside a bundle file: `length` bytes at `offset` of `path`.
/// A blob that spans chunk files has several.
public struct FileSegment: Sendable, Equatable {
    public var path: String
    public var offset: Int64
    public var length: Int64

    public init(path: String, offset: Int64, length: Int64) {
        self.path = path
        self.offset = offset
        self.length = length
    }
}

/// The one reader of a blob's bytes out of the bundle's files, in order, one segment after
/// the other, one piece at a time (memory stays at one piece): push's uploads, verify's layer
/// files, `--deep`'s decompressor and small reads of manifests all read through it. A file
/// that ends inside the blob is an error naming the file and the blob, never a short blob.
public final class BlobSegmentReader {
    public let segments: [FileSegment]
    public let digest: Digest
    public let pieceSize: Int
    private var index = 0
    private var reader: ChunkedFileReader?
    private var ownBuffer: UnsafeMutableRawBufferPointer?
    public private(set) var remaining: Int64

    public init(segments: [FileSegment], digest: Digest, pieceSize: Int = 1 << 20) {
        self.segments = segments
        self.digest = digest
        self.pieceSize = max(4096, pieceSize)
        remaining = segments.reduce(0) { $0 + $1.length }
    }

    public convenience init(_ location: BlobLocation, pieceSize: Int = 1 << 20) {
        self.init(segments: location.segments, digest: location.digest, pieceSize: pieceSize)
    }

    deinit { ownBuffer?.deallocate() }

    /// Reads the next piece (at most `pieceSize` bytes, at most what `destination` holds) into
    /// the caller's memory; how many bytes, 0 at the end of the blob.
    public func next(into destination: UnsafeMutableRawBufferPointer) throws(BundleError) -> Int {
        while index < segments.count {
            let segment = segments[index]
            if reader == nil {
                do {
                    reader = try ChunkedFileReader(path: segment.path, offset: segment.offset, length: segment.length, chunkSize: pieceSize)
                } catch {
                    throw Self.map(error, segment: segment, digest: digest)
                }
            }
            guard let reader else { continue }  // invariant: set just above
            let filled: Int
            do { filled = try reader.next(into: destination) } catch { throw Self.map(error, segment: segment, digest: digest) }
            if filled > 0 {
                remaining -= Int64(filled)
                return filled
            }
            self.reader = nil
            index += 1
        }
        return 0
    }

    /// The next piece in the reader's own buffer (valid until the next call), nil at the end.
    public func next() throws(BundleError) -> UnsafeRawBufferPointer? {
        let buffer = ownBuffer ?? UnsafeMutableRawBufferPointer.allocate(byteCount: pieceSize, alignment: 4096)
        ownBuffer = buffer
        let filled = try next(into: buffer)
        return filled == 0 ? nil : UnsafeRawBufferPointer(rebasing: buffer[0..<filled])
    }

    private static func map(_ error: StreamsError, segment: FileSegment, digest: Digest) -> BundleError {
        switch error {
        case let .fileEndedEarly(path, offset):
            return .corrupt(file: path, detail: "it ends at \(offset) bytes, inside blob \(digest) (the file got shorter after the bundle was opened)")
        case let .io(path, operation, code):
            return .io(path: path, operation: operation, errno: code)
        default:
            return .corrupt(file: segment.path, detail: "\(error)")
        }
    }
}
