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
                guard let chunk = try reader?.next() else {
                    reader = nil
                    segment += 1
                    continue
                }
                try verifier.consume(chunk)
                sequence.onBytes?(chunk.count)
                return ByteBuffer(bytes: chunk)
            }
        }
    }
}
