import Bundle
import DKP
import OCI
import Streams
import Version

/// What a push carries, by kind (d8's end-of-push summary).
public struct PushSummary: Sendable, Codable, Equatable {
    /// Controller versions of the root layout, oldest first.
    public var platformVersions: [String] = []
    public var modules: [String] = []
    public var packages: [String] = []
    public var plugins: [String] = []
    public var securityDatabases: [String] = []
    /// `.att` tags (VEX attestations).
    public var vexAttestations = 0
}

/// Where discovery tags go: every directory directly under `modules/`, `packages/` and
/// `deckhouse-cli/plugins/` gets a tag of its name in the parent repository.
enum DiscoveryKind: String, CaseIterable {
    case module = "modules", package = "packages", plugin = "deckhouse-cli/plugins"

    /// The kind and item name of a layout path (`packages/bar/version` -> (.package, "bar")).
    static func item(of path: String) -> (kind: DiscoveryKind, name: String)? {
        for kind in allCases {
            let prefix = kind.rawValue + "/"
            guard path.hasPrefix(prefix) else { continue }
            let name = path.dropFirst(prefix.count).split(separator: "/").first.map(String.init) ?? ""
            return name.isEmpty ? nil : (kind, name)
        }
        return nil
    }
}

extension BundlePusher {
    struct Node {
        var digest: Digest
        var bytes: [UInt8]
        var mediaType: MediaType
        var blobs: [Descriptor]
        var children: [Digest]
    }

    /// One tag of the bundle with the manifests it needs (children first, the tagged one last).
    struct PlannedTag {
        var layout: BundleIndex.Layout
        var tag: String
        var tree: [Node]
    }

    /// The whole push, worked out from the index.json files and the manifests in the bundle.
    public func plan() throws -> PushPlan {
        var builder = PlanBuilder(bundle: bundle)
        builder.leftOut = leftOut?.blobs ?? [:]
        var planned: [String: [PlannedTag]] = [:]  // layout path of a module, package or plugin -> its tags
        // As verify reports them (there a problem): what the earlier copies held is not pushed.
        builder.warnings += bundle.duplicateEntries.map {
            "\($0.tar) holds '\($0.name)' \($0.count) times; its last copy is used, as extracting the tar would, "
                + "and what the earlier copies hold is not pushed (verify fails such a tar)"
        }
        for layout in bundle.layouts {
            let repository = repository(for: layout.path)
            let resolved = layout.resolvedTags()
            let isItem = DiscoveryKind.item(of: layout.path) != nil
            builder.warnings += resolved.warnings
            // Names outside the grammar: held back before anything moves, named, the rest pushed.
            builder.problems += resolved.invalid.map { "\($0); not pushed" }
            if let problem = layout.pathProblem ?? Reference.problem(repository: repository).map({ "layout '\(layout.path)' cannot be pushed to \(repository.prefix(120)): \($0)" }) {
                builder.problems.append("\(problem); its \(resolved.tags.count) tag(s) not pushed")
                continue
            }
            for entry in resolved.tags {
                let what = "\(entry.tar):\(layout.path.isEmpty ? "/" : layout.path) \(entry.tag)"
                do {
                    let tree = try manifestTree(entry.descriptor.digest, mediaType: entry.descriptor.mediaType, layout: layout, what: what,
                                                damaged: &builder.damagedManifests)
                    try builder.add(tree, layout: layout, repository: repository, reference: entry.tag,
                                    order: Self.order(layout: layout.path, tag: entry.tag), what: what)
                    if isItem {  // kept only where a discovery tag may need it
                        planned[layout.path, default: []].append(PlannedTag(layout: layout, tag: entry.tag, tree: tree))
                    }
                    builder.count(entry, layout: layout)
                } catch {
                    builder.problems.append("\(error)")
                }
            }
        }
        try addDiscoveryTags(planned, to: &builder)
        var plan = builder.finish()
        for index in plan.leftOut.indices { plan.leftOut[index].holderRepository = repository(for: plan.leftOut[index].holder) }
        return plan
    }

    /// Discovery tags last of all, as d8 pushes them: a cluster that lists `modules` finds a
    /// module only once its images and release channels are there.
    static let discoveryOrder = 7

    /// `modules:<m>`, `packages:<p>`, `deckhouse-cli/plugins:<n>` for every item directory the
    /// bundle holds, naming the newest version's image of the item's main layout (else of any
    /// of its layouts, else its first image): only the tag name carries meaning.
    private func addDiscoveryTags(_ planned: [String: [PlannedTag]], to builder: inout PlanBuilder) throws {
        var items: [String: (kind: DiscoveryKind, name: String, paths: [String])] = [:]
        for path in planned.keys.sorted() {
            guard let item = DiscoveryKind.item(of: path) else { continue }
            items["\(item.kind.rawValue)/\(item.name)", default: (item.kind, item.name, [])].paths.append(path)
        }
        for key in items.keys.sorted() {
            guard let item = items[key] else { continue }
            let main = item.kind.rawValue + "/" + item.name
            let candidates = (item.paths.contains(main) ? [main] : []) + item.paths.filter { $0 != main }
            var chosen: PlannedTag?
            for path in candidates {
                let tags = (planned[path] ?? []).filter { !$0.tag.hasSuffix(".att") && !$0.tag.hasPrefix("sha256:") }
                if let newest = tags.compactMap({ t in Version(releaseTag: t.tag).map { ($0, t) } }).max(by: { $0.0 < $1.0 })?.1 {
                    chosen = newest
                    break
                }
            }
            chosen = chosen ?? candidates.lazy.compactMap { planned[$0]?.first { !$0.tag.hasSuffix(".att") } }.first
            guard let chosen else { continue }
            let repository = repository(for: item.kind.rawValue)
            try builder.add(chosen.tree, layout: chosen.layout, repository: repository, reference: item.name, order: Self.discoveryOrder,
                            what: "\(item.kind.rawValue) discovery tag \(item.name)")
        }
    }

    /// Images first, then attestations, then channel aliases, then the release-channel
    /// repositories (versions, then channels): a cluster never sees a channel pointing at
    /// something missing.
    static func order(layout: String, tag: String) -> Int {
        let isChannel = ReleaseChannel(rawValue: tag) != nil
        let isReleaseLayout = layout == "release-channel" || layout.hasSuffix("/release")
            || (layout.hasPrefix("packages/") && layout.hasSuffix("/version"))
        if isReleaseLayout { return isChannel ? 6 : 5 }
        if tag.hasSuffix(".att") { return 2 }
        return isChannel ? 3 : 1
    }

    /// The manifest and, for an index, its children, depth first (children before parents).
    /// Each manifest is read from its first copy whose bytes match its digest (the layout's
    /// own first, then any other layout's); a copy that does not is added to `damaged`.
    func manifestTree(_ digest: Digest, mediaType: MediaType, layout: BundleIndex.Layout, what: String,
                      damaged: inout Set<String>) throws -> [Node] {
        // The layout must list it (as verify requires); its bytes may come from any copy.
        let copies = bundle.blob(digest, in: layout) == nil ? [] : bundle.allCopies(digest, preferring: layout)
        guard !copies.isEmpty else {
            throw MirrorError.corruptBlob("\(what): manifest \(digest) is missing from the bundle")
        }
        var intact: [UInt8]?
        for copy in copies {
            let bytes = try bundle.readSmall(copy)
            let actual = Streams.SHA256.digest(of: bytes)
            if actual == digest {
                intact = bytes
                break
            }
            damaged.insert("\(copy.tar): \(copy.entry) is corrupt: its bytes hash to \(actual), not \(digest); it is the manifest of \(what)")
        }
        guard let bytes = intact else {
            throw MirrorError.corruptBlob("\(what): manifest \(digest) has no intact copy in the bundle "
                + "(every copy fails its digest: \(copies.map(\.tar).joined(separator: ", ")))")
        }
        let document = try ManifestDocument.parse(bytes, contentType: mediaType)
        switch document {
        case let .image(image):
            return [Node(digest: digest, bytes: bytes, mediaType: document.mediaType, blobs: [image.config] + image.layers, children: [])]
        case let .index(index):
            var nodes: [Node] = []
            for child in index.manifests {
                nodes += try manifestTree(child.digest, mediaType: child.mediaType, layout: layout, what: what, damaged: &damaged)
            }
            nodes.append(Node(digest: digest, bytes: bytes, mediaType: document.mediaType, blobs: [], children: index.manifests.map(\.digest)))
            return nodes
        }
    }
}

/// Collects blobs (each once, with every repository that needs it), child manifests (once per
/// repository) and tags, then orders them.
struct PlanBuilder {
    let bundle: BundleIndex
    var blobs: [Digest: BlobPush] = [:]
    /// The layout that first needed each blob: its copies are tried first.
    var firstLayout: [Digest: BundleIndex.Layout] = [:]
    var children: [ManifestPut] = []
    /// Tags by their `BundlePusher.order`, each list in the order they came.
    var tagsByOrder: [Int: [ManifestPut]] = [:]
    var seenChildren = Set<String>()
    var problems: [String] = []
    var warnings: [String] = []
    /// Manifest copies that fail their digest where another copy is intact.
    var damagedManifests = Set<String>()
    var summary = PushSummary()
    /// A differential bundle's left-out blobs (`left-out-blobs.inventory`), and those the
    /// pushed images need, each with the repositories that need it.
    var leftOut: [Digest: Inventory.Entry] = [:]
    var leftOutNeeds: [Digest: LeftOutNeed] = [:]
    private var modules = Set<String>(), packages = Set<String>(), plugins = Set<String>(), databases = Set<String>()
    private var versions = Set<String>()

    init(bundle: BundleIndex) { self.bundle = bundle }

    /// The manifests of `tree` into `repository`, the last one under `reference`; every blob
    /// they list to `repository` too. Throws, adding nothing, when a blob is not in the bundle.
    mutating func add(_ tree: [BundlePusher.Node], layout: BundleIndex.Layout, repository: String, reference: String,
                      order: Int, what: String) throws {
        var located: [(Descriptor, BlobLocation)] = []
        var listed: [(Descriptor, Inventory.Entry)] = []
        for node in tree {
            for blob in node.blobs {
                guard let location = bundle.blob(blob.digest, in: layout) else {
                    // Left out of a differential bundle: the target must hold it (checked before anything moves).
                    if let entry = leftOut[blob.digest], entry.size == blob.size {
                        listed.append((blob, entry))
                        continue
                    }
                    throw MirrorError.corruptBlob("\(what): blob \(blob.digest) is missing from the bundle")
                }
                located.append((blob, location))
            }
        }
        for (blob, location) in located {
            // In place: a copy of the entry would copy its `users`, once per image sharing the blob.
            blobs[blob.digest, default: BlobPush(digest: blob.digest, descriptor: blob, copies: [location], repositories: [], what: what)]
                .add(repository: repository, user: what)
            if firstLayout[blob.digest] == nil { firstLayout[blob.digest] = layout }
        }
        for (blob, entry) in listed {
            leftOutNeeds[blob.digest, default: LeftOutNeed(descriptor: blob, holder: entry.repository)].add(repository: repository, user: what)
        }
        // Depth first, so a node's children have their levels when it comes: images 0, an index one more than its deepest child.
        var levels: [Digest: Int] = [:]
        for node in tree { levels[node.digest] = node.children.map { (levels[$0] ?? 0) + 1 }.max() ?? 0 }
        for node in tree.dropLast() where seenChildren.insert("\(repository)@\(node.digest)").inserted {
            children.append(ManifestPut(repository: repository, reference: node.digest.string, digest: node.digest, bytes: node.bytes,
                                        mediaType: node.mediaType, blobs: node.blobs.map(\.digest), children: node.children, what: what,
                                        stage: levels[node.digest] ?? 0))
        }
        guard let top = tree.last else { return }
        // Tags after every child (levels stay far below 100), in their order.
        tagsByOrder[order, default: []].append(ManifestPut(
            repository: repository, reference: reference, digest: top.digest, bytes: top.bytes, mediaType: top.mediaType,
            blobs: top.blobs.map(\.digest), children: top.children, what: what, stage: 100 + order))
    }

    /// Counts a pushed tag into the summary.
    mutating func count(_ entry: LayoutTags.Tagged, layout: BundleIndex.Layout) {
        if entry.isAttestation { summary.vexAttestations += 1 }
        let parts = layout.path.split(separator: "/").map(String.init)
        if layout.path.isEmpty, Version(tag: entry.tag) != nil { versions.insert(entry.tag) }
        if let item = DiscoveryKind.item(of: layout.path) {
            switch item.kind {
            case .module: modules.insert(item.name)
            case .package: packages.insert(item.name)
            case .plugin: plugins.insert(item.name)
            }
        }
        if parts.count == 2, parts[0] == "security" { databases.insert(parts[1]) }
    }

    /// The plan; the builder's manifest lists are moved into it.
    mutating func finish() -> PushPlan {
        var summary = self.summary
        summary.platformVersions = versions.sorted { (Version(tag: $0) ?? Version(0, 0, 0)) < (Version(tag: $1) ?? Version(0, 0, 0)) }
        summary.modules = modules.sorted()
        summary.packages = packages.sorted()
        summary.plugins = plugins.sorted()
        summary.securityDatabases = databases.sorted()
        // Every copy in the bundle, so a push can go on with the next when one fails its digest.
        let blobs = self.blobs.values.map { blob in
            var blob = blob
            blob.copies = bundle.allCopies(blob.digest, preferring: firstLayout[blob.digest])
            return blob
        }
        // Moved list by list: at 20,000 tags a sorted copy beside them was 7 MB.
        var manifests = children
        children = []
        manifests.reserveCapacity(manifests.count + tagsByOrder.values.reduce(0) { $0 + $1.count })
        for order in tagsByOrder.keys.sorted() {
            manifests.append(contentsOf: tagsByOrder.removeValue(forKey: order) ?? [])
        }
        return PushPlan(blobs: blobs.sorted { $0.descriptor.size > $1.descriptor.size },
                        manifests: manifests, problems: problems, warnings: warnings,
                        damagedManifests: damagedManifests.sorted(), summary: summary,
                        leftOut: leftOutNeeds.values.sorted { $0.descriptor.digest < $1.descriptor.digest })
    }
}

extension BlobPush {
    /// `repository` needs the blob, for the image `user`.
    mutating func add(repository: String, user: String) {
        if !repositories.contains(repository) { repositories.append(repository) }
        users.insert(user)
    }
}
