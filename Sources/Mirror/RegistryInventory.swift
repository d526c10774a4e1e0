import BoundedPool
import Foundation
import OCI
import Registry
import Synchronization

/// Takes the inventory of the registry under a push TARGET: finds its repositories (by
/// `_catalog`, or by walking the DKP layout where the catalog is refused), lists every
/// repository's tags, then reads every tag's manifest, and each index's children, in one
/// bounded pool of `jobs` requests. Image manifests give their config and layers as blobs.
///
/// Listing less than the registry holds is safe (pull --against would ship a blob again);
/// listing more is not. So a tag that disappears, or a manifest that cannot be parsed, is left
/// out (the latter with a warning); a network or permission failure fails the whole run.
public struct RegistryInventory: Sendable {
    /// How the repositories were found.
    public enum Walk: String, Sendable {
        case catalog, layout
    }

    public struct Result: Sendable {
        public var inventory: Inventory
        public var walk: Walk
        /// Repositories that exist (answer a tag list), tags listed.
        public var repositories: Int
        public var tags: Int
        public var warnings: [String]
    }

    public let client: RegistryClient
    public let target: Reference
    public let modulesPathSuffix: String
    public let packagesPathSuffix: String
    public let jobs: Int
    /// Skips `_catalog` and walks the DKP layout (for tests, and registries whose catalog lies).
    public var forceLayoutWalk = false
    /// One line at each stage and every tenth of the manifests read.
    public var progress: @Sendable (String) -> Void

    public init(client: RegistryClient, target: Reference, modulesPathSuffix: String = "/modules",
                packagesPathSuffix: String = "/packages", jobs: Int, progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.client = client
        self.target = target
        self.modulesPathSuffix = modulesPathSuffix
        self.packagesPathSuffix = packagesPathSuffix
        self.jobs = max(1, jobs)
        self.progress = progress
    }

    public func run(created: Date = Date()) async throws -> Result {
        let (paths, walk) = try await repositories()
        progress("\(paths.count) repositories under \(target) "
            + (walk == .catalog ? "(from _catalog)" : "(by walking the DKP layout: _catalog is refused)"))
        let listed = try await tags(of: paths)
        let items = listed.flatMap { entry in entry.tags.map { (path: entry.path, tag: $0) } }
        progress("\(items.count) tags in \(listed.count) repositories")
        let state = Mutex(WalkState())
        let step = max(1, items.count / 10)
        try await forEachConcurrently(items, limit: jobs) { item in
            try await read(item.tag, at: item.path, state: state)
            let done = state.withLock { $0.done += 1; return $0.done }
            if done % step == 0 || done == items.count { progress("\(done) of \(items.count) tags read") }
        }
        return state.withLock { state in
            Result(inventory: state.builder.inventory(source: .registry(target.name), created: created), walk: walk,
                   repositories: listed.count, tags: items.count, warnings: state.warnings.sorted())
        }
    }

    /// What the pool shares.
    struct WalkState {
        var builder = InventoryBuilder()
        /// Manifests whose children or blobs were taken (by digest, in any repository).
        var expanded = Set<Digest>()
        var warnings: [String] = []
        var done = 0
    }

    /// Paths below TARGET ("" for TARGET itself), as the registry names them (suffixes applied).
    func repositories() async throws -> ([String], Walk) {
        if !forceLayoutWalk, let all = try await client.catalog() {
            let prefix = target.repository + "/"
            let below = all.compactMap { name -> String? in
                name == target.repository ? "" : name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : nil
            }
            return (below.sorted(), .catalog)
        }
        return (try await layoutWalk().sorted(), .layout)
    }

    /// Each existing repository's tags; one that does not exist is dropped.
    func tags(of paths: [String]) async throws -> [(path: String, tags: [String])] {
        let found = Mutex<[(path: String, tags: [String])]>([])
        try await forEachConcurrently(paths, limit: jobs) { path in
            do {
                let tags = try await client.tags(repository: registryRepository(path))
                found.withLock { $0.append((path, tags)) }
            } catch RegistryError.notFound {
                return
            }
        }
        return found.withLock { $0 }.sorted { $0.path < $1.path }
    }

    /// Reads `reference` at `path` and records it; an index's children follow, unless another
    /// task has already taken them.
    func read(_ reference: String, at path: String, state: borrowing Mutex<WalkState>) async throws {
        let repository = registryRepository(path), layoutPath = layoutPath(forRegistryPath: path)
        var pending = [reference]
        while let next = pending.popLast() {
            let fetched: FetchedManifest
            do {
                fetched = try await client.manifest(repository: repository, reference: next)
            } catch RegistryError.notFound {
                continue  // deleted since the tags were listed, or a child the registry lacks
            } catch let error as RegistryError {
                guard case .invalidResponse = error else { throw error }
                state.withLock { $0.warnings.append("\(target.host)/\(repository):\(next) left out: \(error)") }
                continue
            }
            let children: [Digest] = state.withLock { state in
                state.builder.addManifest(fetched.digest, size: Int64(fetched.bytes.count), repository: layoutPath)
                let first = state.expanded.insert(fetched.digest).inserted
                switch fetched.document {
                case let .image(image):
                    // Every repository holding the image holds its blobs: record each (the first name wins).
                    for blob in [image.config] + image.layers {
                        state.builder.addBlob(blob.digest, size: blob.size, repository: layoutPath)
                    }
                    return []
                case let .index(index):
                    return first ? index.manifests.map(\.digest) : []
                }
            }
            pending += children.map(\.string)
        }
    }

    /// The repository of a path below TARGET.
    func registryRepository(_ path: String) -> String {
        path.isEmpty ? target.repository : "\(target.repository)/\(path)"
    }
}
