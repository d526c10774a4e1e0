import OCI

/// The one rule that turns a layout's index.json descriptors into tags, shared by push,
/// verify and `verify --registry`:
///
/// - a descriptor's tag is its `io.deckhouse.image.short_tag`;
/// - a descriptor without one gets a warning naming it (tar, layout, digest, ref name) and is
///   pushed under the tag its `org.opencontainers.image.ref.name` carries (`host/repo:tag`, or
///   a bare tag such as `latest`); with a ref name that carries no tag (a digest reference,
///   none at all) it is pushed by digest alone, with a warning;
/// - a short tag that is not a valid tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`), or a digest
///   other than the descriptor's, makes the descriptor invalid (`invalid`: verify fails, push
///   holds it back and says so); `sha256:<hex>` of its own digest is pushed by digest;
/// - two descriptors of one layout giving one tag different digests: a warning naming both,
///   and the last wins (tars in name order, each in its index.json order), at the position of
///   the first, as d8 does. The same digest twice is one tag, silently.
public struct LayoutTags: Sendable, Equatable {
    public struct Tagged: Sendable, Equatable {
        /// The tag to push (or `sha256:<hex>` to push by digest alone).
        public let tag: String
        public let descriptor: Descriptor
        /// The tar whose index.json gave this descriptor.
        public let tar: String
    }

    /// In order of each tag's first appearance.
    public var tags: [Tagged]
    /// What the rule had to decide, one line each, naming the descriptors.
    public var warnings: [String]
    /// Descriptors that cannot be pushed as the bundle names them (a tag outside the grammar,
    /// a digest tag of another digest), one line each naming the descriptor and the problem.
    public var invalid: [String] = []

    /// The descriptor tagged `tag`, if any.
    public func descriptor(tagged tag: String) -> Descriptor? {
        tags.first { $0.tag == tag }?.descriptor
    }
}

extension BundleIndex.Layout {
    /// The layout's tags by the rule of `LayoutTags`.
    public func resolvedTags() -> LayoutTags {
        let place = path.isEmpty ? "/" : path
        var tags = [LayoutTags.Tagged]()
        var position = [String: Int]()
        var seen = Set<String>()
        var warnings = [String]()
        var invalid = [String]()
        for part in parts {
            for descriptor in part.descriptors {
                let refName = descriptor.annotations?[BundleIndex.refNameAnnotation]
                guard seen.insert(descriptor.digest.string + " " + (refName ?? "")).inserted else { continue }
                let what = "\(part.tar): \(place): descriptor \(descriptor.digest) (ref name \(refName.map { "'\($0)'" } ?? "none"))"
                var tag: String
                if let short = descriptor.annotations?[BundleIndex.shortTagAnnotation], !short.isEmpty {
                    tag = short
                } else if let fromName = refName.flatMap(Self.tag(ofRefName:)) {
                    warnings.append("\(what) has no \(BundleIndex.shortTagAnnotation); pushed as tag '\(fromName)', from its ref name")
                    tag = fromName
                } else {
                    warnings.append("\(what) has no \(BundleIndex.shortTagAnnotation) and its ref name carries no tag; pushed by digest alone")
                    tag = descriptor.digest.string
                }
                if tag.hasPrefix("@") { tag.removeFirst() }
                if tag.hasPrefix("sha256:") {
                    guard (try? Digest(parsing: tag)) == descriptor.digest else {
                        invalid.append("\(what): short tag '\(tag.prefix(80))' is a digest other than the descriptor's")
                        continue
                    }
                } else if let problem = Reference.problem(tag: tag) {
                    invalid.append("\(what): its short tag is not a valid tag: \(problem)")
                    continue
                }
                let tagged = LayoutTags.Tagged(tag: tag, descriptor: descriptor, tar: part.tar)
                if let index = position[tag] {
                    let earlier = tags[index]
                    guard earlier.descriptor.digest != descriptor.digest else { continue }
                    let earlierName = earlier.descriptor.annotations?[BundleIndex.refNameAnnotation].map { "'\($0)'" } ?? "none"
                    warnings.append("\(place): tag '\(tag)' is given to two different images: \(earlier.descriptor.digest) "
                        + "(\(earlier.tar), ref name \(earlierName)) and \(descriptor.digest) (\(part.tar), ref name "
                        + "\(refName.map { "'\($0)'" } ?? "none")); the last, \(descriptor.digest) from \(part.tar), is pushed")
                    tags[index] = tagged
                } else {
                    position[tag] = tags.count
                    tags.append(tagged)
                }
            }
        }
        return LayoutTags(tags: tags, warnings: warnings, invalid: invalid)
    }

    /// What keeps the layout's path from being a repository path (`modules/Commander`: capitals),
    /// naming the layout and its tars; nil for a valid path and for the root.
    public var pathProblem: String? {
        guard !path.isEmpty, let problem = Reference.problem(repository: path) else { return nil }
        return "\(tars.joined(separator: ", ")): layout '\(path.prefix(120))' cannot be pushed: its \(problem)"
    }

    /// The tag a ref name carries: `host[:port]/repo:tag` -> `tag`; a bare tag (`latest`,
    /// `v1.2.3`) -> itself; nil for a digest reference or a name without a tag.
    static func tag(ofRefName name: String) -> String? {
        guard !name.isEmpty, !name.contains("@") else { return nil }
        let last = name.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? name
        if let colon = last.lastIndex(of: ":") {
            let tag = String(last[last.index(after: colon)...])
            return isValidTag(tag) ? tag : nil
        }
        // No repository part at all: OCI layouts may name a reference by its tag alone.
        return !name.contains("/") && isValidTag(name) ? name : nil
    }

    /// The distribution spec's tag grammar.
    public static func isValidTag(_ tag: String) -> Bool {
        let bytes = Array(tag.utf8)
        guard let first = bytes.first, bytes.count <= 128 else { return false }
        func word(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) || (0x41...0x5a).contains(b) || (0x61...0x7a).contains(b) || b == 0x5f }
        return word(first) && bytes.dropFirst().allSatisfy { word($0) || $0 == 0x2e || $0 == 0x2d }
    }
}

extension LayoutTags.Tagged {
    /// A cosign-style attestation (`sha256-<hex>.att`, `<tag>.att`): VEX documents in d8 bundles.
    public var isAttestation: Bool { tag.hasSuffix(".att") }
}
