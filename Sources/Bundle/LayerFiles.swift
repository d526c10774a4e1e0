import Foundation

/// Reads chosen files out of image layers (tar, gzip tar or zstd tar) as they stream in,
/// without holding a layer in memory.
public enum LayerFiles {
    /// Bytes handed from the async producer to libarchive at most at once (chunks).
    static let queueCapacity = 3

    /// `path` without a leading `/` or `./`, without `.` components, empty components or a trailing `/`.
    public static func normalize(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true)
            .filter { $0 != "." }
            .joined(separator: "/")
    }

    /// Reads the `wanted` paths out of one layer.
    ///
    /// The layer's bytes are pulled from `layer` by a task and decoded by libarchive on a
    /// dedicated thread; at most a few chunks are buffered between them. Paths in the
    /// result are normalized (see `normalize`). With `stopWhenFound`, reading stops as
    /// soon as every wanted path has been seen once (a later duplicate entry of the same
    /// path in this layer would then be missed); otherwise the whole layer is read.
    ///
    /// Errors: a `LayerError` for a malformed layer or a too large wanted file; an error
    /// thrown by `layer` is rethrown as it is.
    public static func scan<Bytes: AsyncSequence & Sendable>(
        layer: Bytes, wanted: Set<String>, maxFileSize: Int = 16 << 20, stopWhenFound: Bool = false
    ) async throws -> LayerScan where Bytes.Element == [UInt8] {
        let wantedPaths = Set(wanted.map(normalize).filter { !$0.isEmpty })
        let handoff = ChunkHandoff(capacity: queueCapacity)

        return try await withThrowingTaskGroup(of: LayerScan?.self) { group in
            group.addTask {
                await produce(layer, into: handoff)
                return nil
            }
            group.addTask {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<LayerScan, Error>) in
                    let thread = Thread {
                        let result: Result<LayerScan, Error>
                        do {
                            var reader = LayerReader(
                                wanted: wantedPaths, maxFileSize: maxFileSize, stopWhenFound: stopWhenFound)
                            result = .success(try reader.read(from: handoff))
                        } catch {
                            result = .failure(handoff.producerError ?? error)
                        }
                        handoff.closeConsumer()
                        continuation.resume(with: result)
                    }
                    thread.name = "layer-scan"
                    thread.stackSize = 2 << 20
                    thread.start()
                }
            }
            var scan: LayerScan?
            while let next = try await group.next() {
                if let next {
                    scan = next
                    group.cancelAll()  // the producer: nothing more is read
                }
            }
            guard let scan else {
                // The reader always returns a scan or throws.
                throw LayerError.malformedLayer("the layer reader ended without a result")
            }
            return scan
        }
    }

    /// Reads the `wanted` paths out of an image whose layers are opened by `openLayer`
    /// (`openLayer(i)` opens layer `i` counting from the bottom, 0 is the base layer).
    ///
    /// Layers are visited from the top (`layerCount - 1`) downwards, and no further layer is
    /// opened once every wanted path is decided: found as a file (the highest layer's file
    /// wins), removed by a whiteout, or hidden by a non-file entry (directory, symbolic link).
    /// Paths found nowhere, deleted or not regular files are absent from the result. Result
    /// keys are normalized paths (see `normalize`). `stopWhenFound` is passed to `scan` for
    /// each layer.
    public static func readFiles<S: AsyncSequence & Sendable>(
        _ wanted: Set<String>, layerCount: Int, maxFileSize: Int = 16 << 20, stopWhenFound: Bool = false,
        openLayer: @Sendable (Int) async throws -> S
    ) async throws -> [String: [UInt8]] where S.Element == [UInt8] {
        var remaining = Set(wanted.map(normalize).filter { !$0.isEmpty })
        var found: [String: [UInt8]] = [:]
        var index = layerCount - 1
        while index >= 0, !remaining.isEmpty {
            try Task.checkCancellation()
            let bytes = try await openLayer(index)
            let layer = try await scan(
                layer: bytes, wanted: remaining, maxFileSize: maxFileSize, stopWhenFound: stopWhenFound)
            for path in remaining where layer.resolves(path) {
                if let contents = layer.files[path] { found[path] = contents }
                remaining.remove(path)
            }
            index -= 1
        }
        return found
    }

    /// Feeds `layer` into `handoff` until it ends, fails, the reader stops or the task is cancelled.
    private static func produce<Bytes: AsyncSequence & Sendable>(
        _ layer: Bytes, into handoff: ChunkHandoff
    ) async where Bytes.Element == [UInt8] {
        do {
            for try await chunk in layer {
                if chunk.isEmpty { continue }
                guard try await handoff.put(chunk) else { return }
            }
            try Task.checkCancellation()
            handoff.finish(error: nil)
        } catch {
            handoff.finish(error: error)
        }
    }
}
