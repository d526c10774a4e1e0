import CArchive
import Streams

/// libarchive's view of the handoff. Plain chunks are copied into a buffer owned here, which
/// stays valid until the next callback as libarchive requires. A layer whose first bytes are a
/// zstd frame is decoded here with Streams' `ZstdDecoder` (measured faster than libarchive's zstd
/// filter, README), and libarchive reads the decoded tar from the decoder's output buffer.
final class LayerReadSource {
    let handoff: ChunkHandoff
    private var buffer: UnsafeMutableRawPointer?
    private var bufferSize = 0

    /// The first bytes, gathered until there are enough to recognize zstd; nil once sniffed.
    private var head: [UInt8]? = []
    /// What the handoff said after the head, when it ended or failed while gathering it.
    private var headEnd: ChunkHandoff.Take?
    private var decoder: ZstdDecoder?
    /// The input chunk the decoder is working through.
    private var pending: [UInt8] = []
    private var pendingOffset = 0
    private var outputFull = false
    /// Why the zstd decoder stopped, for the error the reader throws.
    private(set) var zstdFailure: ZstdError?

    init(handoff: ChunkHandoff) {
        self.handoff = handoff
    }

    deinit {
        buffer?.deallocate()
    }

    /// Returns the byte count placed at `*out`, 0 at the end, -1 on failure.
    func read(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        if head != nil { sniff() }
        if decoder != nil { return readDecoded(out) }
        switch nextChunk() {
        case .end:
            return 0
        case .failed:
            return -1
        case .chunk(let chunk):
            return hand(chunk, out)
        }
    }

    /// Gathers at least 4 bytes (or all there are) and starts a decoder if they begin a zstd frame.
    private func sniff() {
        var gathered = head ?? []
        while gathered.count < 4 {
            let next = handoff.take()
            guard case .chunk(let chunk) = next else {
                headEnd = next
                break
            }
            gathered += chunk
        }
        head = nil
        pending = gathered
        if gathered.withUnsafeBytes({ ZstdDecoder.looksLikeZstd($0) }) {
            do {
                decoder = try ZstdDecoder(outputSize: ZstdDecoder.recommendedOutputSize)
            } catch {
                zstdFailure = error as? ZstdError ?? .allocationFailed
            }
        }
    }

    /// The gathered head first, then the handoff's chunks.
    private func nextChunk() -> ChunkHandoff.Take {
        if pendingOffset < pending.count {
            let chunk = Array(pending[pendingOffset...])
            pending = []
            pendingOffset = 0
            return .chunk(chunk)
        }
        if let headEnd { return headEnd }
        return handoff.take()
    }

    private func hand(_ chunk: [UInt8], _ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        if chunk.count > bufferSize {
            buffer?.deallocate()
            buffer = .allocate(byteCount: chunk.count, alignment: 16)
            bufferSize = chunk.count
        }
        guard let buffer else { return -1 }
        chunk.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress {
                buffer.copyMemory(from: base, byteCount: bytes.count)
            }
        }
        out?.pointee = UnsafeRawPointer(buffer)
        return chunk.count
    }

    /// The next decoded piece, pointing into the decoder's output buffer (valid until the next call).
    private func readDecoded(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        guard let decoder, zstdFailure == nil else { return -1 }
        do {
            while true {
                if pendingOffset == pending.count && !outputFull {
                    switch nextChunk() {
                    case .chunk(let chunk):
                        pending = chunk
                        pendingOffset = 0
                    case .end:
                        try decoder.finish()
                        return 0
                    case .failed:
                        return -1
                    }
                }
                let (taken, decoded) = try pending.withUnsafeBytes { bytes in
                    try decoder.step(UnsafeRawBufferPointer(rebasing: bytes[pendingOffset...]))
                }
                pendingOffset += taken
                outputFull = decoded.count == ZstdDecoder.recommendedOutputSize
                if !decoded.isEmpty {
                    out?.pointee = decoded.baseAddress
                    return decoded.count
                }
            }
        } catch {
            zstdFailure = error as? ZstdError ?? .allocationFailed
            return -1
        }
    }
}

func layerReadCallback(
    _ archive: OpaquePointer?, _ clientData: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> la_ssize_t {
    guard let clientData else { return -1 }
    let source = Unmanaged<LayerReadSource>.fromOpaque(clientData).takeUnretainedValue()
    return la_ssize_t(source.read(out))
}
