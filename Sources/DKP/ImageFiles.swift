import Bundle
import NIOCore
import OCI
import Registry

/// Reads files out of an image's layers in a registry, top layer first, so the small top
/// layers usually answer without touching the big ones beneath.
public enum ImageFiles {
    /// The wanted paths (`deckhouse/version`, no leading slash) found in `repository:reference`.
    /// An index is resolved to its linux/amd64 image (or its first). Missing paths are absent.
    public static func read(_ paths: Set<String>, client: RegistryClient, repository: String,
                            reference: String) async throws -> [String: [UInt8]] {
        try await read(paths, client: client, repository: repository,
                       manifest: try await client.manifest(repository: repository, reference: reference))
    }

    /// The same, from the image's manifest already fetched.
    public static func read(_ paths: Set<String>, client: RegistryClient, repository: String,
                            manifest fetched: FetchedManifest) async throws -> [String: [UInt8]] {
        var manifest = fetched
        if case let .index(index) = manifest.document {
            let child = index.manifests.first { $0.platform?.os == "linux" && $0.platform?.architecture == "amd64" }
                ?? index.manifests.first
            guard let child else { return [:] }
            manifest = try await client.manifest(repository: repository, reference: child.digest.string)
        }
        guard case let .image(image) = manifest.document else { return [:] }
        let layers = image.layers
        return try await LayerFiles.readFiles(paths, layerCount: layers.count) { index in
            ByteArrays(base: client.blob(repository: repository, descriptor: layers[index]))
        }
    }
}

/// Adapts a stream of ByteBuffers to the `[UInt8]` chunks `LayerFiles` reads.
struct ByteArrays<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = [UInt8]
    let base: Base
    func makeAsyncIterator() -> Iterator { Iterator(base: base.makeAsyncIterator()) }
    struct Iterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        mutating func next() async throws -> [UInt8]? {
            try await base.next().map { Array($0.readableBytesView) }
        }
    }
}

/// Runs `body` over `items` with at most `limit` at once, keeping the results in order.
func concurrentMap<T: Sendable, R: Sendable>(_ items: [T], limit: Int,
                                             _ body: @escaping @Sendable (T) async throws -> R) async throws -> [R] {
    try await withThrowingTaskGroup(of: (Int, R).self) { group in
        var results = [R?](repeating: nil, count: items.count)
        var next = 0
        func add() {
            guard next < items.count else { return }
            let index = next, item = items[next]
            group.addTask { (index, try await body(item)) }
            next += 1
        }
        for _ in 0..<max(1, limit) { add() }
        while let (index, result) = try await group.next() {
            results[index] = result
            add()
        }
        return results.compactMap { $0 }
    }
}
