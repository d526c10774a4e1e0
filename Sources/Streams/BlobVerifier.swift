import OCI

/// Hashes and counts the bytes of one blob as they pass, then checks them against the
/// descriptor. Memory use is constant whatever the blob size.
public final class BlobVerifier {
    public let expectedDigest: Digest
    public let expectedSize: Int64
    public private(set) var count: Int64 = 0
    private let hasher = SHA256()

    public init(digest: Digest, size: Int64) {
        self.expectedDigest = digest
        self.expectedSize = size
    }

    /// Adds bytes; throws as soon as more bytes arrive than the descriptor allows.
    public func consume(_ bytes: UnsafeRawBufferPointer) throws(StreamsError) {
        count += Int64(bytes.count)
        if count > expectedSize {
            throw .sizeMismatch(digest: expectedDigest, expected: expectedSize, actual: count)
        }
        hasher.update(bytes)
    }

    /// Checks the total size and the digest; call once after the last byte.
    public func finish() throws(StreamsError) {
        guard count == expectedSize else {
            throw .sizeMismatch(digest: expectedDigest, expected: expectedSize, actual: count)
        }
        let actual = hasher.finalize()
        guard actual == expectedDigest else {
            throw .digestMismatch(expected: expectedDigest, actual: actual)
        }
    }
}
