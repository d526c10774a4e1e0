import BoundedPool
import Foundation
import OCI
import Registry
import Version

/// Modules and packages are laid out alike in the source (d8-current.md §2): a catalog
/// repository whose tags are names, a main repository per name whose version images hold
/// `images_digests.json` and `extra_images.json`, a channel repository, extra images.
enum ModularKind: Sendable {
    case module, package

    /// The catalog repository below `<E>`, also the first segment of every layout path.
    var catalog: String { self == .module ? "modules" : "packages" }
    /// The channel repository below the main one: `release` for modules, `version` for packages.
    var channelSegment: String { self == .module ? "release" : "version" }
    var tarPrefix: String { self == .module ? "module-" : "package-" }
    var includeFlag: String { self == .module ? "--include-module" : "--include-package" }
}

/// An image whose VEX attestation (`.att`) to look up, and where a found one goes.
struct VexSubject: Sendable, Hashable {
    var tar: String
    var layout: String
    var repository: String
    /// A tag or `sha256:<hex>`.
    var subject: String
}

extension EditionDiscovery {
    func discoverModular(_ kind: ModularKind, include: [String: VersionConstraint?], exclude: Set<String>,
                         selection: PullSelection, into result: inout DiscoveredEdition) async throws -> [VexSubject] {
        let all: [String]
        if selection.proxyRegistry {
            // No tags list: the names come from the include filter alone.
            guard !include.isEmpty else {
                if kind == .package { return [] }
                throw DKPError.invalidInput("--proxy-registry needs --include-module NAME[@CONSTRAINT]: the source cannot list its modules")
            }
            all = include.keys.sorted()
        } else {
            do {
                all = try await client.tags(repository: sourceRepository(kind.catalog)).sorted()
            } catch RegistryError.notFound {
                result.notes.append("\(source)/\(kind.catalog) does not exist: no \(kind.catalog) pulled")
                return []
            }
        }
        var names = all
        if !include.isEmpty {
            let missing = include.keys.filter { !all.contains($0) }.sorted()
            if !missing.isEmpty {
                throw DKPError.notFound("\(kind.catalog) \(missing.joined(separator: ", ")) not found in \(source)/\(kind.catalog); available: \(all.joined(separator: ", "))")
            }
            names = all.filter { include.keys.contains($0) }
        }
        names.removeAll { exclude.contains($0) }

        let found = try await concurrentMap(names, limit: concurrency) { name in
            try await self.modularImages(kind, name: name, constraint: include[name] ?? nil, selection: selection)
        }
        var subjects: [VexSubject] = []
        for entry in found {
            switch kind {
            case .module: result.modules[entry.name] = entry.versions
            case .package: result.packages[entry.name] = entry.versions
            }
            result.notes += entry.notes
            result.images += entry.images
            subjects += entry.vex
        }
        return subjects
    }

    private struct ModularImages: Sendable {
        var name: String
        var versions: [String]
        var images: [BundleImage]
        var vex: [VexSubject]
        var notes: [String]
    }

    private func modularImages(_ kind: ModularKind, name: String, constraint: VersionConstraint?,
                               selection: PullSelection) async throws -> ModularImages {
        let base = "\(kind.catalog)/\(name)"
        let channelLayout = "\(base)/\(kind.channelSegment)"
        let tar = "\(kind.tarPrefix)\(name).tar"
        let exactOnly = constraint?.isExactOnly == true
        // Only exact pins take no channel images from the source (d8): the pins are the channels.
        var read = ChannelRead()
        var channelNotes: [String] = []
        if !exactOnly {
            read = try await readChannels(repository: sourceRepository(channelLayout), prerelease: true)
            // A channel whose version cannot be read gives no version, as in d8; its image is
            // still mirrored as the source has it.
            for (channel, failure) in read.failures.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                channelNotes.append("\(kind.catalog.dropLast()) \(name) channel \(channel.rawValue): \(failure.message); no version taken from it")
            }
            // Every channel the source has for it is pulled, so any suspended one stops the pull.
            try checkSuspended(read.present, read, selection, repository: channelLayout)
        }
        // Every channel's version, whatever the constraint (d8 pulls them "in addition"), then
        // the latest patch per minor of what matches a range, then the pins.
        var tags = Set(read.states.values.map(\.version.releaseTag))
        if let constraint, !exactOnly {
            let mainRepository = sourceRepository(base)
            let candidates = selection.proxyRegistry
                ? try await Self.probeVersions(constraint) { try await self.client.manifestDescriptor(repository: mainRepository, reference: $0.tag) != nil }
                : try await client.tags(repository: mainRepository).compactMap(Version.init(releaseTag:)).filter { constraint.matches($0) }
            tags.formUnion(Self.latestPatches(candidates, within: constraint).map(\.releaseTag))
        }
        tags.formUnion(constraint?.pins.map(\.tag) ?? [])
        guard !tags.isEmpty else {
            return ModularImages(name: name, versions: [], images: [], vex: [],
                                 notes: channelNotes + ["\(kind.catalog.dropLast()) \(name): no version\(constraint.map { " matches \($0)" } ?? " on any channel"); skipped"])
        }
        let versions = Self.sortedTags(tags)

        var images: [BundleImage] = []
        var vex: [VexSubject] = []
        var notes = channelNotes
        var withoutReleaseImage = Set<String>()
        // Versions share images (an extra image's tag, a digest two releases list): each once,
        // so the plan counts and looks up what the bundle holds.
        var seenImages = Set<BundleImage>(), seenVex = Set<VexSubject>()
        for tag in versions {
            let version = try await versionImages(kind, name: name, tag: tag, selection: selection)
            images += version.images.filter { seenImages.insert($0).inserted }
            vex += version.vex.filter { seenVex.insert($0).inserted }
            notes += version.notes
            if !version.hasReleaseImage { withoutReleaseImage.insert(tag) }
        }
        if !selection.onlyExtraImages {
            for (pin, channels) in constraint?.channelAliases ?? [] where !channels.isEmpty {
                guard !withoutReleaseImage.contains(pin.tag) else {
                    notes.append("\(kind.catalog.dropLast()) \(name) \(pin.tag) has no \(kind.channelSegment) image in the source: "
                                 + "it is not put onto \(channels.map(\.rawValue).joined(separator: ", "))")
                    continue
                }
                for channel in channels {
                    images.append(image(tar: tar, layout: channelLayout, tag: pin.tag, shortTag: channel.rawValue))
                }
            }
            for channel in read.present {
                images.append(image(tar: tar, layout: channelLayout, tag: channel.rawValue))
            }
        }
        return ModularImages(name: name, versions: versions, images: images, vex: vex, notes: notes)
    }

    private struct VersionImages: Sendable {
        var images: [BundleImage] = []
        var vex: [VexSubject] = []
        var notes: [String] = []
        var hasReleaseImage = false
    }

    /// One version of a module or package: its main image, its image in the channel repository
    /// where the source has one, the digest images it lists, its extra images, and the VEX subjects.
    private func versionImages(_ kind: ModularKind, name: String, tag: String, selection: PullSelection) async throws -> VersionImages {
        let base = "\(kind.catalog)/\(name)"
        let channelLayout = "\(base)/\(kind.channelSegment)", tar = "\(kind.tarPrefix)\(name).tar"
        let mainRepository = sourceRepository(base)
        // `release:<v>` is not published for every version (d8 pulls it where it exists): asked
        // for now, answered while the version's files are read (no round trip added).
        async let releaseImage = selection.onlyExtraImages
            ? nil : client.manifestDescriptor(repository: sourceRepository(channelLayout), reference: tag)
        let files: [String: [UInt8]]
        do {
            files = try await ImageFiles.read(["images_digests.json", "extra_images.json"], client: client,
                                              repository: mainRepository, reference: tag)
        } catch RegistryError.notFound {
            throw DKPError.notFound("\(source)/\(base):\(tag) does not exist")
        }
        var result = VersionImages()
        if !selection.onlyExtraImages {
            result.images.append(image(tar: tar, layout: base, tag: tag))
            if try await releaseImage != nil {
                result.images.append(image(tar: tar, layout: channelLayout, tag: tag))
                result.hasReleaseImage = true
            } else {
                result.notes.append("\(source)/\(channelLayout):\(tag) does not exist: the bundle has no \(kind.channelSegment) image for \(name) \(tag)")
            }
            result.vex.append(VexSubject(tar: tar, layout: base, repository: mainRepository, subject: tag))
            let listed = try ImageList.digests(files["images_digests.json"], file: "images_digests.json",
                                               of: "\(source)/\(base):\(tag)", mustListImages: false)
            for digest in listed {
                result.images.append(digestImage(tar: tar, layout: base, digest: digest))
                result.vex.append(VexSubject(tar: tar, layout: base, repository: mainRepository, subject: digest.string))
            }
        }
        let extras = try ExtraImages.tags(files["extra_images.json"], of: "\(source)/\(base):\(tag)")
        result.notes += extras.notes
        for (extraName, extraTag) in extras.tags {
            result.images.append(image(tar: tar, layout: "\(base)/extra/\(extraName)", tag: extraTag))
            // d8 looks extra images' attestations up in the main repository too.
            result.vex.append(VexSubject(tar: tar, layout: base, repository: mainRepository, subject: extraTag))
        }
        return result
    }

    /// `package-versions.tar`: every tag of `packages/<p>/version` for every package of the catalog,
    /// written on every pull (d8-current.md §2). A source without packages has none.
    ///
    /// Except the channel tags a pin retags in the package's own tar (`--include-package p@=v1`):
    /// push unites the two layouts and the later tar in name order wins a tag, so the source's
    /// channel there would undo the pin for every package named before `versions`.
    func discoverPackageVersions(_ selection: PullSelection, into result: inout DiscoveredEdition) async throws {
        // With --only-extra-images the package tar has no channel images: nothing to leave out.
        let pinned: [String: Set<String>] = selection.packages && !selection.onlyExtraImages
            ? selection.includePackages.compactMapValues { $0.map { Set($0.channelAliases.flatMap(\.channels).map(\.rawValue)) } }
            : [:]
        // A refusal is never the reason a pull fails (d8 warns and goes on): a catalog or a
        // package's version repository the source will not list is left out, with a note. A
        // network or a busy registry that failed fails the pull, which a re-run completes.
        let names: [String]
        do {
            names = try await client.tags(repository: sourceRepository("packages")).sorted()
        } catch RegistryError.notFound {
            return
        } catch let error as RegistryError where !error.mayPassOnRetry {
            result.notes.append("package-versions.tar not written: \(source)/packages cannot be listed (\(error))")
            return
        }
        let perPackage = try await concurrentMap(names, limit: concurrency) { name -> (images: [BundleImage], note: String?) in
            let layout = "packages/\(name)/version"
            let tags: [String]
            do {
                tags = try await self.client.tags(repository: self.sourceRepository(layout))
            } catch RegistryError.notFound {
                return ([], nil)
            } catch let error as RegistryError where !error.mayPassOnRetry {
                return ([], "package-versions.tar: \(self.source)/\(layout) cannot be listed, left out (\(error))")
            }
            let retagged = pinned[name] ?? []
            return (tags.sorted().filter { !retagged.contains($0) }.map { self.image(tar: "package-versions.tar", layout: layout, tag: $0) }, nil)
        }
        for package in perPackage {
            result.images += package.images
            if let note = package.note { result.notes.append(note) }
        }
    }

    /// The `.att` attestations of `subjects` that exist, looked up in one bounded pool
    /// (a real edition has thousands: never one round trip after another).
    func findVexImages(_ subjects: [VexSubject]) async throws -> [BundleImage] {
        // Keyed by the subjects' own strings: an interpolated key was a new string per subject.
        struct Key: Hashable { var tar: String; var repository: String; var subject: String }
        var seen = Set<Key>()
        let unique = subjects.filter { seen.insert(Key(tar: $0.tar, repository: $0.repository, subject: $0.subject)).inserted }
        let found = try await concurrentMap(unique, limit: max(concurrency, 16)) { subject -> BundleImage? in
            // Copied to storage of its own length: an interpolated string keeps the capacity it
            // grew to (192 bytes for these 75 characters), and a pull keeps one per attestation.
            let tag = String(decoding: Array((subject.subject.hasPrefix("sha256:")
                ? "sha256-\(subject.subject.dropFirst("sha256:".count)).att" : "\(subject.subject).att").utf8), as: UTF8.self)
            guard try await self.client.manifestDescriptor(repository: subject.repository, reference: tag) != nil else { return nil }
            return BundleImage(tar: subject.tar, layout: subject.layout, repository: subject.repository, reference: tag,
                               shortTag: tag, sourceHost: self.source.host)
        }
        return found.compactMap { $0 }
    }
}
