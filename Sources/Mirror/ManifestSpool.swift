import Foundation
import Synchronization

/// The small entries of a planned pull (manifests, index.json), kept in a temporary file from
/// the moment they are fetched until they are written into their tars: with 20,000 digest
/// images they were about 18 MB of the plan's memory, and the page cache holds them as well
/// for free. The file is unlinked as soon as it is made, so nothing is left behind, whatever
/// ends the process.
final class ManifestSpool: Sendable {
    /// Where an entry's bytes sit in the spool.
    struct Extent: Sendable {
        var offset: Int64
        var length: Int
    }

    private struct State {
        var descriptor: Int32
        var size: Int64 = 0
    }
    private let state: Mutex<State>

    init(directory: String = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") throws {
        // A named file, unlinked at once (Glibc's module does not export O_TMPFILE).
        var template = Array("\(directory)/dkp-mirror-plan.XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if descriptor >= 0 {
            template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        }
        guard descriptor >= 0 else {
            throw MirrorError.failed("cannot create a temporary file in \(directory) for the plan's manifests: \(String(cString: strerror(errno))); set TMPDIR to a writable directory")
        }
        state = Mutex(State(descriptor: descriptor))
    }

    deinit { state.withLock { _ = close($0.descriptor) } }

    /// Appends `bytes`; one call's bytes are contiguous.
    func append(_ bytes: [UInt8]) throws -> Extent {
        try state.withLock { state in
            let offset = state.size
            var written = 0
            while written < bytes.count {
                let count = bytes.withUnsafeBytes {
                    pwrite(state.descriptor, $0.baseAddress! + written, $0.count - written, off_t(offset) + off_t(written))
                }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    throw MirrorError.failed("cannot write the plan's manifests to a temporary file: \(String(cString: strerror(errno))); free space in TMPDIR or set it to another directory")
                }
                written += count
            }
            state.size += Int64(bytes.count)
            return Extent(offset: offset, length: bytes.count)
        }
    }

    /// One entry written in pieces by `body` (each piece handed to the closure it is given):
    /// the pieces must follow each other, so nothing else may append meanwhile.
    func appendInPieces(_ body: (([UInt8]) throws -> Void) throws -> Void) throws -> Extent {
        var whole: Extent?
        try body { piece in
            let extent = try self.append(piece)
            guard let start = whole else { whole = extent; return }
            guard extent.offset == start.offset + Int64(start.length) else {
                throw MirrorError.failed("the plan's spool file was appended to while an entry was being written in pieces")
            }
            whole = Extent(offset: start.offset, length: start.length + extent.length)
        }
        return whole ?? Extent(offset: state.withLock { $0.size }, length: 0)
    }

    /// The bytes of `range` handed to `body` in pieces of at most `pieceSize`, each read into
    /// `scratch` (reused): index.json of 20,000 references is 8 MB, and reading it whole made
    /// the end of every large pull 8 MB heavier.
    func read(_ range: Extent, pieceSize: Int, into scratch: inout [UInt8], _ body: ([UInt8]) throws -> Void) throws {
        let descriptor = state.withLock { $0.descriptor }
        var start = 0
        repeat {
            let length = min(pieceSize, range.length - start)
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: repeatElement(0, count: length))
            var done = 0
            while done < length {
                let count = scratch.withUnsafeMutableBytes {
                    pread(descriptor, $0.baseAddress! + done, length - done, off_t(range.offset) + off_t(start + done))
                }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    throw MirrorError.failed("cannot read the plan's manifests back from their temporary file: \(count < 0 ? String(cString: strerror(errno)) : "it is shorter than written")")
                }
                done += count
            }
            try body(scratch)
            start += length
        } while start < range.length
    }
}
