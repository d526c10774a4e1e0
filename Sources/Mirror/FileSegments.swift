import Bundle
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
    let segments: [FileSegment]
    let descriptor: Descriptor
    /// Where the bytes come from, for errors (`platform.tar: blobs/sha256/<hex>`).
    let what: String
    let onBytes: (@Sendable (Int) -> Void)?
    /// 112 KiB: seven 16 KiB TLS records, whose ciphertext still fits the 128 KiB buffer that
    /// NIOSSL keeps per connection (it grows by powers of two and keeps its size). With 1 MiB
    /// each connection kept 2 MiB of ciphertext; push peaked at 87-93 MB at -j 8, 52 with this,
    /// at the same speed (measured over TLS, straight and through nginx).
    static let readSize = 112 << 10
    /// Buffers one upload may have handed to the HTTP client and not yet seen written out.
    /// The client pauses a body only once the socket stops taking bytes, and it learns that on
    /// the event loop, later; without this bound a fast disk queues several MiB per upload
    /// (heaptrack: 53 of 76 MB at -j 8 over TLS). Eight of 112 KiB, under 1 MiB an upload, so a
    /// big blob's one connection seldom waits for a buffer to come back (bench: push 20.11 s and
    /// 60 MB with eight, 21.71 s and 52 MB with two).
    static let buffersInFlight = 8

    func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    struct Iterator: AsyncIteratorProtocol {
        let sequence: FileSegmentsSequence
        let reader: BlobSegmentReader
        let verifier: BlobVerifier
        var done = false
        /// Read into in turn. A buffer is reused once the upload has written it out (this
        /// ring then holds its only reference); until then `next` waits for it.
        var ring = [ByteBuffer](repeating: ByteBuffer(), count: FileSegmentsSequence.buffersInFlight)
        var turn = 0

        init(sequence: FileSegmentsSequence) {
            self.sequence = sequence
            self.reader = BlobSegmentReader(segments: sequence.segments, digest: sequence.descriptor.digest, pieceSize: FileSegmentsSequence.readSize)
            self.verifier = BlobVerifier(digest: sequence.descriptor.digest, size: sequence.descriptor.size)
        }

        mutating func next() async throws -> ByteBuffer? {
            guard !done else { return nil }
            var buffer = try await Self.reusable(&ring[turn])
            buffer.clear(minimumCapacity: FileSegmentsSequence.readSize)
            let reader = self.reader
            let count: Int
            do {
                count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: FileSegmentsSequence.readSize) { destination in
                    try reader.next(into: destination)
                }
            } catch let BundleError.corrupt(file, detail) {
                // A copy cut short is damaged like one with wrong bytes: another copy may be intact.
                throw MirrorError.corruptBlob("\(sequence.what) is corrupt: \(file): \(detail)")
            }
            ring[turn] = buffer
            if count == 0 {
                done = true
                try finish()  // an empty blob, or segments shorter than the blob
                return nil
            }
            try buffer.withUnsafeReadableBytes { try verifier.consume($0) }
            if reader.remaining == 0 {
                // The last bytes: check the digest before handing them over, so a registry
                // never receives a whole blob with wrong bytes (it would answer before the
                // upload learns why, and keep nothing useful).
                done = true
                try finish()
            }
            sequence.onBytes?(count)
            turn = (turn + 1) % ring.count
            return buffer
        }

        func finish() throws {
            do {
                try verifier.finish()
            } catch let StreamsError.digestMismatch(expected, actual) {
                throw MirrorError.corruptBlob("\(sequence.what) is corrupt: its bytes hash to \(actual), not \(expected)")
            } catch {
                throw MirrorError.corruptBlob("\(sequence.what) is corrupt: \(error)")
            }
        }

        /// Takes `slot`'s buffer once nothing else holds it: the HTTP client drops its
        /// reference when the bytes are on the socket (or encrypted, over TLS). Polls, as the
        /// client offers no signal for a body part's write; the pause stays far below the
        /// time the socket needs for the other seven buffers.
        static func reusable(_ slot: inout ByteBuffer) async throws -> ByteBuffer {
            var pause = Duration.microseconds(100)
            // A slot not yet used has no memory of its own to wait for (empty buffers share storage).
            while slot.capacity > 0, slot.modifyIfUniquelyOwned({ _ in true }) == nil {
                try await Task.sleep(for: pause)
                pause = Swift.min(pause * 2, .milliseconds(1))
            }
            let buffer = slot
            slot = ByteBuffer()  // so `buffer` is the only reference and clear() keeps its memory
            return buffer
        }
    }
}
