#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a byte range of a file in fixed-size chunks into one reused buffer, so memory
/// stays at one chunk whatever the file size. Reads use pread, so several readers may
/// share a file without sharing a file position.
public final class ChunkedFileReader {
    public let path: String
    public let chunkSize: Int
    private let descriptor: Int32
    private var offset: Int64
    private let end: Int64
    private let buffer: UnsafeMutableRawBufferPointer

    /// Opens `path` to read `length` bytes from `offset` (to the end of the file when nil).
    public init(path: String, offset: Int64 = 0, length: Int64? = nil, chunkSize: Int = 1 << 20) throws(StreamsError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .io(path: path, operation: "stat", errno: code)
        }
        self.path = path
        self.descriptor = fd
        self.offset = offset
        self.end = length.map { offset + $0 } ?? Int64(info.st_size)
        self.chunkSize = max(4096, chunkSize)
        self.buffer = .allocate(byteCount: self.chunkSize, alignment: 4096)
    }

    deinit {
        close(descriptor)
        buffer.deallocate()
    }

    /// Bytes left to read.
    public var remaining: Int64 { end - offset }

    /// The next chunk, valid until the next call, or nil at the end of the range.
    /// A file shorter than the range is an error, not a silent short read.
    public func next() throws(StreamsError) -> UnsafeRawBufferPointer? {
        let filled = try next(into: buffer)
        return filled == 0 ? nil : UnsafeRawBufferPointer(rebasing: buffer[0..<filled])
    }

    /// Reads the next chunk (at most `chunkSize` bytes, and at most what `destination` holds)
    /// into the caller's memory; returns how many bytes, 0 at the end of the range.
    public func next(into destination: UnsafeMutableRawBufferPointer) throws(StreamsError) -> Int {
        guard offset < end, let base = destination.baseAddress else { return 0 }
        let want = Int(min(Int64(min(chunkSize, destination.count)), end - offset))
        var filled = 0
        while filled < want {
            let n = pread(descriptor, base + filled, want - filled, off_t(offset) + off_t(filled))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { throw .fileEndedEarly(path: path, offset: offset + Int64(filled)) }
            filled += n
        }
        offset += Int64(filled)
        return filled
    }
}
