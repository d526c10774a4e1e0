import Foundation
import OCI
import Streams
import Testing

@Suite struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func knownVectors(input: String, hex: String) throws {
        #expect(SHA256.digest(of: Array(input.utf8)) == (try Digest(sha256Hex: hex)))
    }

    @Test func millionAsInPiecesOfOddSizes() throws {
        // FIPS 180-2 test: one million 'a', fed in uneven pieces.
        let hasher = SHA256()
        var fed = 0
        var piece = 1
        let block = [UInt8](repeating: UInt8(ascii: "a"), count: 4096)
        while fed < 1_000_000 {
            let n = min(piece, 1_000_000 - fed, block.count)
            block.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            fed += n
            piece = piece * 3 % 4093 + 1
        }
        #expect(hasher.finalize() == (try Digest(sha256Hex: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")))
        // finalize resets: the hasher starts over.
        #expect(hasher.finalize() == SHA256.digest(of: []))
    }
}

@Suite struct BlobVerifierTests {
    let bytes = Array("hello, blob".utf8)

    @Test func acceptsTheRightBytes() throws {
        let verifier = BlobVerifier(digest: SHA256.digest(of: bytes), size: Int64(bytes.count))
        try bytes.withUnsafeBytes { try verifier.consume(UnsafeRawBufferPointer(rebasing: $0[0..<5])) }
        try bytes.withUnsafeBytes { try verifier.consume(UnsafeRawBufferPointer(rebasing: $0[5...])) }
        try verifier.finish()
        #expect(verifier.count == Int64(bytes.count))
    }

    @Test func rejectsWrongDigestShortAndLongBodies() throws {
        let wrong = BlobVerifier(digest: SHA256.digest(of: [1, 2, 3]), size: Int64(bytes.count))
        try bytes.withUnsafeBytes { try wrong.consume($0) }
        #expect(throws: StreamsError.digestMismatch(expected: SHA256.digest(of: [1, 2, 3]), actual: SHA256.digest(of: bytes))) { try wrong.finish() }

        let short = BlobVerifier(digest: SHA256.digest(of: bytes), size: 100)
        try bytes.withUnsafeBytes { try short.consume($0) }
        #expect(throws: StreamsError.self) { try short.finish() }

        let long = BlobVerifier(digest: SHA256.digest(of: bytes), size: 3)
        #expect(throws: StreamsError.self) { try bytes.withUnsafeBytes { try long.consume($0) } }
    }

    @Test func messagesNameBothDigests() {
        let a = SHA256.digest(of: [1]), b = SHA256.digest(of: [2])
        let text = "\(StreamsError.digestMismatch(expected: a, actual: b))"
        #expect(text.contains(a.string) && text.contains(b.string))
    }
}

@Suite struct ChunkedFileReaderTests {
    func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "dkp-reader-\(UUID().uuidString)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func readsARangeInChunksWithOneBuffer() throws {
        let bytes = (0..<100_000).map { UInt8($0 % 251) }
        let path = try temporaryFile(bytes)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let reader = try ChunkedFileReader(path: path, offset: 1000, length: 50_000, chunkSize: 4096)
        var collected: [UInt8] = []
        var chunks = 0
        var addresses = Set<UInt>()
        while let chunk = try reader.next() {
            #expect(chunk.count <= 4096)
            collected += chunk
            chunks += 1
            addresses.insert(UInt(bitPattern: chunk.baseAddress))
        }
        #expect(collected == Array(bytes[1000..<51_000]))
        #expect(chunks == 13)
        #expect(addresses.count == 1, "one reused buffer")
        #expect(reader.remaining == 0)
    }

    @Test func wholeFileAndErrors() throws {
        let path = try temporaryFile(Array(repeating: 9, count: 10))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let reader = try ChunkedFileReader(path: path)
        #expect(try reader.next().map(Array.init) == Array(repeating: 9, count: 10))
        #expect(try reader.next() == nil)
        // A range past the end of the file is an error, not a silent short read.
        let past = try ChunkedFileReader(path: path, offset: 5, length: 20)
        #expect(throws: StreamsError.self) { _ = try past.next() }
        #expect(throws: StreamsError.self) { _ = try ChunkedFileReader(path: "/nonexistent/file") }
    }
}
