import Synchronization

/// Writes one large entry sequentially as its bytes arrive (a blob download). Each `append`
/// goes straight from the caller's buffer to its place in the tar with `pwrite`; nothing is
/// copied or allocated per piece. One task uses a stream at a time; different entries' streams
/// run concurrently.
public final class EntryStream: Sendable {
    public let entry: Int
    private let writer: TarFileWriter
    private let written = Mutex<Int64>(0)

    init(writer: TarFileWriter, entry: Int) {
        self.writer = writer
        self.entry = entry
    }

    /// Bytes appended since the start (or the last `reset`).
    public var bytesWritten: Int64 { written.withLock { $0 } }

    /// Writes `bytes` at the next position of the entry; throws, writing nothing, when they
    /// would go past the entry's planned size.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(BundleError) {
        let item = try writer.entry(entry)
        try written.withLock { (position: inout Int64) throws(BundleError) in
            let end = position + Int64(bytes.count)
            guard end <= item.size else {
                throw .entryOverflow(file: writer.finalPath, entry: item.name, size: item.size, attempted: end)
            }
            try writer.writeData(bytes, at: item.dataOffset + position)
            position = end
        }
    }

    /// Convenience for byte arrays.
    public func append(_ bytes: [UInt8]) throws(BundleError) {
        try TarIO.withBytes(bytes) { raw throws(BundleError) in try append(raw) }
    }

    /// Completes the entry: the size must match exactly; writes the header and padding,
    /// syncs the bytes and journals the entry.
    public func finish() throws(BundleError) {
        let item = try writer.entry(entry)
        try writer.ensureWritable()
        let position = bytesWritten
        guard position == item.size else {
            throw .entrySizeMismatch(file: writer.finalPath, entry: item.name, expected: item.size, actual: position)
        }
        try writer.finishStreamed(entry, item)
    }

    /// Starts the entry over, for a retried download; bytes already written are overwritten.
    public func reset() { written.withLock { $0 = 0 } }
}
