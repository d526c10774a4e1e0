import CZstd

/// Why a zstd stream could not be decoded.
public enum ZstdError: Error, CustomStringConvertible, Equatable, Sendable {
    /// libzstd refused the bytes (not zstd data, a damaged frame, a checksum mismatch...).
    /// Carries libzstd's message and how many input bytes came before the failing call.
    case corrupt(message: String, inputOffset: Int64)
    /// The input ended inside a frame: the stream was cut short.
    case truncated(inputBytes: Int64, decodedBytes: Int64)
    /// The input held no bytes at all, so not even one frame.
    case empty
    /// libzstd could not allocate its decoding context.
    case allocationFailed

    public var description: String {
        switch self {
        case let .corrupt(message, offset):
            return "invalid zstd data at or after input byte \(offset): \(message)"
        case let .truncated(input, decoded):
            return "the zstd stream ends inside a frame after \(input) input bytes"
                + " (\(decoded) bytes decoded): it is truncated"
        case .empty:
            return "the zstd stream is empty: no frame at all"
        case .allocationFailed:
            return "libzstd could not allocate a decoding context"
        }
    }
}

/// A zstd stream decoder on libzstd's streaming API (`ZSTD_decompressStream`): input is given in
/// pieces of any size, decoded bytes are handed out through one reused output buffer, so memory
/// stays bounded whatever the size of the stream. Frames follow one another (multi-frame streams,
/// skippable frames), as `zstd -d` accepts them.
///
/// One instance decodes one stream; it is not shared between threads.
public final class ZstdDecoder {
    /// libzstd's suggested sizes of an input piece and of the output buffer (about 128 KiB each).
    public static var recommendedInputSize: Int { ZSTD_DStreamInSize() }
    public static var recommendedOutputSize: Int { ZSTD_DStreamOutSize() }

    private let stream: OpaquePointer
    private let output: UnsafeMutableRawBufferPointer
    /// True while a frame is started and not finished (libzstd's hint was not 0).
    private var insideFrame = false
    /// Input and output byte counts so far.
    public private(set) var inputBytes: Int64 = 0
    public private(set) var decodedBytes: Int64 = 0

    /// `outputSize` bytes of output are handed out at most at once.
    public init(outputSize: Int = ZstdDecoder.recommendedOutputSize) throws {
        guard let stream = ZSTD_createDStream() else { throw ZstdError.allocationFailed }
        let initialized = ZSTD_initDStream(stream)
        if ZSTD_isError(initialized) != 0 {
            ZSTD_freeDStream(stream)
            throw ZstdError.allocationFailed
        }
        self.stream = stream
        output = .allocate(byteCount: max(1, outputSize), alignment: 16)
    }

    deinit {
        ZSTD_freeDStream(stream)
        output.deallocate()
    }

    /// Whether `bytes` starts like zstd data: a zstd frame's magic number or a skippable frame's.
    public static func looksLikeZstd(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 4 else { return false }
        let magic = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
        return magic == 0xFD2F_B528 || magic & 0xFFFF_FFF0 == 0x184D_2A50
    }

    /// Decodes `input`, handing each filled part of the output buffer to `consume` (valid only
    /// during that call). Throws `ZstdError.corrupt` when libzstd refuses the bytes, or what
    /// `consume` throws.
    public func decode(_ input: UnsafeRawBufferPointer, _ consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard !input.isEmpty else { return }
        var rest = input
        var outputFull = false
        // A full output buffer means more decoded bytes may be waiting inside libzstd.
        while !rest.isEmpty || outputFull {
            let (taken, decoded) = try step(rest)
            rest = UnsafeRawBufferPointer(rebasing: rest[taken...])
            if !decoded.isEmpty { try consume(decoded) }
            outputFull = decoded.count == output.count
        }
    }

    /// One call of libzstd, for callers that pull decoded bytes (a read callback): decodes from
    /// the start of `input` into the output buffer and returns how many input bytes it took and
    /// the decoded bytes, valid until the next call. When the output came back full, libzstd may
    /// hold more: call again, with the rest of the input or with none.
    public func step(_ input: UnsafeRawBufferPointer) throws -> (taken: Int, output: UnsafeRawBufferPointer) {
        var source = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var sink = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        let hint = ZSTD_decompressStream(stream, &sink, &source)
        if ZSTD_isError(hint) != 0 {
            let message = String(cString: ZSTD_getErrorName(hint))
            throw ZstdError.corrupt(message: message, inputOffset: inputBytes + Int64(source.pos))
        }
        // A call that moved nothing says nothing new: after a finished frame, libzstd answers a
        // flushing call without input with the header size of a next frame, not with 0.
        if source.pos > 0 || sink.pos > 0 { insideFrame = hint != 0 }
        inputBytes += Int64(source.pos)
        decodedBytes += Int64(sink.pos)
        return (source.pos, UnsafeRawBufferPointer(rebasing: output[0..<sink.pos]))
    }

    /// Ends the stream: throws `ZstdError.truncated` when the input stopped inside a frame,
    /// `ZstdError.empty` when there was no input at all.
    public func finish() throws {
        if inputBytes == 0 { throw ZstdError.empty }
        if insideFrame { throw ZstdError.truncated(inputBytes: inputBytes, decodedBytes: decodedBytes) }
    }
}
