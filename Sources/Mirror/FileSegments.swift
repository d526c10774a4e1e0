import Foundation
import NIOCore
import OCI
import Streams

/// A blob's bytes read straight out of the bundle's tar files (one or more segments, as a
/// blob may span chunk files) into ByteBuffers, hashed and counted on the way. The sequence
/// throws instead of ending when the digest or size is wrong, so an upload fed by it never
/// completes with corrupt bytes.
struct FileSegmentsSequence: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let segments: [(path: String, offset: Int64, length: Int64)]
    let descriptor: Descriptor
    let what: String
    let onBytes: (@Sendable (Int) -> Void)?
    static let readSize = 1 << 20

    func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    struct Iterator: AsyncIteratorProtocol {
        let sequence: FileSegmentsSequence
        var segment = 0
        var reader: ChunkedFileReader?
        let verifier: BlobVerifier
        var done = false
        /// Read into in place. Once the upload has written the previous buffer out, this one
        /// holds the only reference and `clear` reuses its memory; otherwise copy-on-write
        /// gives it fresh storage.
        var buffer = ByteBuffer()

        init(sequence: FileSegmentsSequence) {
            self.sequence = sequence
            self.verifier = BlobVerifier(digest: sequence.descriptor.digest, size: sequence.descriptor.size)
        }

        mutating func next() async throws -> ByteBuffer? {
            guard !done else { return nil }
            while true {
                if reader == nil {
                    guard segment < sequence.segments.count else {
                        done = true
                        do {
                            try verifier.finish()
                        } catch let StreamsError.digestMismatch(expected, actual) {
                            throw MirrorError.corruptBlob("\(sequence.what): blob \(expected) in the bundle is corrupt (its bytes hash to \(actual))")
                        } catch {
                            throw MirrorError.corruptBlob("\(sequence.what): blob \(sequence.descriptor.digest) in the bundle is corrupt: \(error)")
                        }
                        return nil
                    }
                    let s = sequence.segments[segment]
                    reader = try ChunkedFileReader(path: s.path, offset: s.offset, length: s.length, chunkSize: FileSegmentsSequence.readSize)
                }
                guard let reader else { continue }  // invariant: set just above
                buffer.clear(minimumCapacity: FileSegmentsSequence.readSize)
                let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: FileSegmentsSequence.readSize) { destination in
                    try reader.next(into: destination)
                }
                if count == 0 {
                    self.reader = nil
                    segment += 1
                    continue
                }
                try buffer.withUnsafeReadableBytes { try verifier.consume($0) }
                sequence.onBytes?(count)
                return buffer
            }
        }
    }
}
