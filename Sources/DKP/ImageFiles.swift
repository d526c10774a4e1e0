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
            guard let child = index.deckhousePlatformChild else { return [:] }
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
