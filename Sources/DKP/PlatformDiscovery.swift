import BoundedPool
import Foundation
import OCI
import Registry
import Synchronization
import Version

/// What a channel image's `version.json` says.
public struct ChannelState: Sendable, Equatable {
    public var version: Version
    public var suspended: Bool
}

/// Channel images read from one repository: the ones that exist, and the ones that exist but
/// could not be read (a pinned pull may go on without an unrelated broken channel).
struct ChannelRead: Sendable {
    var states: [ReleaseChannel: ChannelState] = [:]
    var failures: [ReleaseChannel: ChannelFailure] = [:]

    var hasLTS: Bool { states[.lts] != nil }
    /// Every channel the source has, read or not.
    var present: [ReleaseChannel] { Set(states.keys).union(failures.keys).sorted { $0.rawValue < $1.rawValue } }
}

/// A channel image whose version cannot be read, and whether it says it is suspended all the same.
struct ChannelFailure: Error {
    var message: String
    var suspended = false
}

/// The digest of each channel tag discovery read (`REPOSITORY:CHANNEL` -> manifest digest), so
/// the plan fetches what was read: a channel moved by a release between the two would
/// otherwise give a bundle whose channel names a version whose images it does not hold.
final class ChannelPins: Sendable {
    private let pins = Mutex<[String: Digest]>([:])

    func record(repository: String, tag: String, digest: Digest) {
        pins.withLock { $0[DiscoveredEdition.channelKey(repository: repository, tag: tag)] = digest }
    }

    var all: [String: Digest] { pins.withLock { $0 } }
}

extension EditionDiscovery {
    /// The platform: controller, installers, channel images and platform images of the chosen
    /// versions (d8-current.md §1). Returns the images whose VEX attestations to look up.
    func discoverPlatform(_ selection: PullSelection, into result: inout DiscoveredEdition) async throws -> [VexSubject] {
        let channelRepository = source.repository("release-channel")
        let read = try await readChannels(repository: channelRepository)
        let choice: PlatformChoice
        if let wanted = selection.pinnedTag {
            // A pin needs no tags list (d8 reads none): a source that refuses one is pulled from.
            choice = try await choosePinned(wanted, selection, read, notes: &result.notes)
        } else {
            let known = selection.proxyRegistry ? [] : try await client.tags(repository: channelRepository).compactMap(Version.init(tag:))
            choice = try await chooseRange(selection, read, known: known)
        }
        let selected = choice.selected
        let channelImages = choice.channelImages, installAliases = choice.installAliases
        // The channels as the bundle serves them (a pin's alias names the pinned version), not
        // every channel the source has.
        result.channels = channelImages.reduce(into: [:]) { channels, entry in
            channels[entry.key.rawValue] = ReleaseChannel(rawValue: entry.value).flatMap { read.states[$0]?.version.tag } ?? entry.value
        }
        result.platformVersions = selected

        let range = selection.pinnedTag == nil
        let perVersion = try await concurrentMap(selected, limit: concurrency) { tag in
            try await self.platformImages(tag: tag, releaseData: range)
        }
        var subjects: [VexSubject] = []
        // Releases share most platform images: each once, looked up for VEX once.
        var seen = Set<BundleImage>()
        for version in perVersion {
            let new = version.images.filter { seen.insert($0).inserted }
            result.images += new
            if let release = version.release { result.releases.append(release) }
            result.notes += version.notes
            subjects += new.filter { $0.layout == "" && $0.reference.hasPrefix("sha256:") }
                .map { VexSubject(tar: "platform.tar", layout: "", repository: source.root.repository, subject: $0.reference) }
        }
        for (channel, reference) in channelImages.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            result.images.append(image(tar: "platform.tar", layout: "release-channel", tag: reference, shortTag: channel.rawValue))
        }
        // install:<channel> for every mirrored channel, from the install images already in the bundle
        // (d8 0.33.17): the documented air-gapped install runs <repo>/install:stable.
        for (channel, version) in installAliases.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            result.images.append(image(tar: "platform.tar", layout: "install", tag: version, shortTag: channel.rawValue))
        }
        return subjects
    }

    /// The versions a pull takes, and the channel and install aliases it gives them.
    struct PlatformChoice {
        var selected: [String] = []
        /// Channel -> the source tag of release-channel that the bundle tags with that channel.
        var channelImages: [ReleaseChannel: String] = [:]
        /// Channel -> version whose install image the bundle tags `install:<channel>`.
        var installAliases: [ReleaseChannel: String] = [:]
    }

    /// `--deckhouse-tag`: one version (or a channel's), retagged on every default channel.
    private func choosePinned(_ wanted: String, _ selection: PullSelection, _ read: ChannelRead,
                              notes: inout [String]) async throws -> PlatformChoice {
        let channelRepository = source.repository("release-channel")
        var choice = PlatformChoice()
        let tag: String
        if let channel = ReleaseChannel(rawValue: wanted) {
            guard let state = read.states[channel] else {
                if let failure = read.failures[channel] { throw DKPError.invalidSource(failure.message) }
                throw DKPError.notFound("release channel \(wanted) is not published in \(source); \(describe(read.states, await knownVersions(selection)))")
            }
            tag = state.version.tag
        } else {
            tag = wanted
        }
        // A channel pin takes the channel's own image; a version pin, that version's.
        let aliasSource = wanted
        guard try await client.manifestDescriptor(repository: source.root.repository, reference: tag) != nil else {
            throw DKPError.notFound("\(source):\(wanted) does not exist; \(describe(read.states, await knownVersions(selection)))")
        }
        // The channels the request names, as d8 matches them: by name, or by the version asked
        // for (`--deckhouse-tag stable` is stable alone, whatever else shares its version).
        let matched = read.states.filter { $0.key.rawValue == wanted || $0.value.version.tag == wanted }.map(\.key)
        try checkSuspended(matched, read, selection)
        choice.selected = [tag]
        // The pinned version's channel image answers on every default channel, so a cluster on
        // any channel sees it (as d8 retags it).
        if try await client.manifestDescriptor(repository: channelRepository, reference: aliasSource) != nil {
            for channel in ReleaseChannel.standard { choice.channelImages[channel] = aliasSource }
        } else {
            notes.append("\(source.host)/\(channelRepository):\(aliasSource) does not exist: the bundle has no release channels")
        }
        // lts, when it is the pin or points at the pinned version, comes as the source serves it
        // (d8 matches channels to the pinned tag): a CSE cluster on lts must still find it.
        var channels = ReleaseChannel.standard
        if matched.contains(.lts) {
            channels.append(.lts)
            choice.channelImages[.lts] = ReleaseChannel.lts.rawValue
        }
        for channel in channels { choice.installAliases[channel] = tag }
        return choice
    }

    /// The versions `release-channel` has tags for, for a message: none where it cannot be listed.
    private func knownVersions(_ selection: PullSelection) async -> [Version] {
        guard !selection.proxyRegistry else { return [] }
        return ((try? await client.tags(repository: source.repository("release-channel"))) ?? []).compactMap(Version.init(tag:))
    }

    /// A range: the channels' versions and, with `--include-platform` or `--since-version`, the
    /// latest patch of each minor in between.
    private func chooseRange(_ selection: PullSelection, _ read: ChannelRead, known: [Version]) async throws -> PlatformChoice {
        let channelRepository = source.repository("release-channel")
        var choice = PlatformChoice()
        if let (channel, failure) = read.failures.sorted(by: { $0.key.rawValue < $1.key.rawValue }).first {
            throw DKPError.invalidSource("release channel \(channel.rawValue): \(failure.message)")
        }
        let missing = ReleaseChannel.standard.filter { read.states[$0] == nil }
        if !read.hasLTS && !missing.isEmpty {
            throw DKPError.notFound("\(source)/release-channel lacks channel(s) \(missing.map(\.rawValue).joined(separator: ", ")) and has no lts: "
                                    + "an edition publishes all five channels or lts; \(describe(read.states, known)); pin one with --deckhouse-tag")
        }
        var channels = read.states
        var versions: Set<Version>
        if let constraint = selection.includePlatform {
            let candidates = selection.proxyRegistry
                ? try await Self.probeVersions(constraint) { try await self.client.manifestDescriptor(repository: channelRepository, reference: $0.tag) != nil }
                : known.filter { constraint.matches($0) }
            versions = Self.latestPatches(candidates, within: constraint)
            channels = channels.filter { constraint.matches($0.value.version) }
        } else {
            guard let low = selection.sinceVersion ?? channels[.rockSolid]?.version ?? channels.values.map(\.version).min(),
                  let high = channels[.alpha]?.version ?? channels.values.map(\.version).max() else {
                throw DKPError.invalidSource("\(source)/release-channel has no readable channel images; is \(source) a DKP edition?")
            }
            if selection.sinceVersion != nil { channels = channels.filter { $0.value.version >= low } }
            versions = Self.latestPatches(known.filter { $0 >= low && $0 <= high })
        }
        try checkSuspended(Array(channels.keys), read, selection)
        for state in channels.values { versions.insert(state.version) }
        guard !versions.isEmpty else {
            throw DKPError.notFound("no platform version of \(source) matches --include-platform \(selection.includePlatform?.description ?? ""); \(describe(read.states, known))")
        }
        choice.selected = versions.sorted().map(\.tag)
        for (channel, state) in channels {
            choice.channelImages[channel] = channel.rawValue
            choice.installAliases[channel] = state.version.tag
        }
        return choice
    }

    /// A pull that would include a suspended channel stops, unless `--ignore-suspend`.
    /// `repository` names the channels' repository in the message (the platform's by default).
    func checkSuspended(_ channels: [ReleaseChannel], _ read: ChannelRead, _ selection: PullSelection,
                        repository: String = "release-channel") throws {
        let suspended = channels.filter { read.states[$0]?.suspended == true || read.failures[$0]?.suspended == true }.map(\.rawValue).sorted()
        guard !suspended.isEmpty, !selection.ignoreSuspend else { return }
        throw DKPError.suspended("\(source)/\(repository): channel \(suspended.joined(separator: ", ")) is suspended "
                                 + "(version.json says \"suspend\": true); try again later, or pass --ignore-suspend to pull it anyway")
    }

    /// The images of one platform version: controller, installers, its channel image, and every
    /// digest its images_digests.json files list; for a range pull also its release data.
    private func platformImages(tag: String, releaseData: Bool) async throws -> (images: [BundleImage], release: ReleaseData?, notes: [String]) {
        var images = [
            image(tar: "platform.tar", layout: "", tag: tag),
            image(tar: "platform.tar", layout: "install", tag: tag),
        ]
        // The standalone installer is not published for every version (d8 pulls it where it
        // exists): asked for now, answered while the lists below are read (no round trip added).
        async let standalone = client.manifestDescriptor(repository: source.repository("install-standalone"), reference: tag)
        let channelRepository = source.repository("release-channel")
        var release: ReleaseData?
        var notes: [String] = []
        if try await client.manifestDescriptor(repository: channelRepository, reference: tag) == nil {
            // d8 stops a range pull here; the version's images are whole without it, so it is
            // said (a pinned pull says it where the channels are chosen).
            if releaseData {
                notes.append("\(source)/release-channel:\(tag) does not exist: the bundle has no release-channel image for \(tag), "
                             + "and deckhousereleases.yaml no DeckhouseRelease for it")
            }
        } else {
            images.append(image(tar: "platform.tar", layout: "release-channel", tag: tag))
            if releaseData {
                let files = try await ImageFiles.read(["version.json", "changelog.yaml"], client: client,
                                                      repository: channelRepository, reference: tag)
                if let json = files["version.json"] {
                    release = ReleaseData(version: tag, versionJSON: json, changelog: files["changelog.yaml"])
                }
            }
        }
        // The lists of platform images are required: without them the bundle would silently lack
        // the images (ImageList says which image and file, and what is wrong).
        let controllerList = "deckhouse/modules/images_digests.json"
        let controller = try await ImageFiles.read([controllerList], client: client, repository: source.root.repository, reference: tag)
        var found = Set(try ImageList.digests(controller[controllerList], file: controllerList, of: "\(source):\(tag)", mustListImages: true))
        let installList = "deckhouse/candi/images_digests.json", olderInstallList = "deckhouse/candi/images_tags.json"
        let installImage = "\(source.host)/\(source.repository("install")):\(tag)"
        let installManifest = try await client.manifest(repository: source.repository("install"), reference: tag)
        let install = try await ImageFiles.read([installList], client: client, repository: source.repository("install"),
                                                manifest: installManifest)
        var installTags: [String] = []
        if install[installList] == nil,
           // Only then the older file: looking for both would read every layer of every installer.
           let older = try await ImageFiles.read([olderInstallList], client: client, repository: source.repository("install"),
                                                 manifest: installManifest)[olderInstallList] {
            // Older installers list their images by tag in the edition's root repository.
            installTags = try ImageList.tags(older, file: olderInstallList, of: installImage)
        } else {
            found.formUnion(try ImageList.digests(install[installList], file: installList, of: installImage, mustListImages: true))
        }
        for digest in found.sorted() {
            images.append(digestImage(tar: "platform.tar", layout: "", digest: digest))
        }
        for installTag in installTags where installTag != tag {
            images.append(image(tar: "platform.tar", layout: "", tag: installTag))
        }
        if try await standalone != nil {
            images.append(image(tar: "platform.tar", layout: "install-standalone", tag: tag))
        } else {
            notes.append("\(source)/install-standalone:\(tag) does not exist: the bundle has no standalone installer for \(tag)")
        }
        return (images, release, notes)
    }

    /// `version.json` of every channel image in `repository` (`lts` included; channels that do not
    /// exist are left out, channels that cannot be read are failures). With `prerelease`, a
    /// version may be a release candidate (`v1.3.0-rc.1`, as a module's channel may name; d8
    /// takes it as written); the platform's are `vX.Y.Z`.
    func readChannels(repository: String, prerelease: Bool = false) async throws -> ChannelRead {
        let pairs = try await concurrentMap(ReleaseChannel.allCases, limit: concurrency) { channel -> (ReleaseChannel, Result<ChannelState, ChannelFailure>?) in
            // The manifest's GET answers whether the channel exists: no HEAD before it (one round
            // trip less before the first blob byte).
            let manifest: FetchedManifest
            do {
                manifest = try await client.manifest(repository: repository, reference: channel.rawValue)
            } catch RegistryError.notFound {
                return (channel, nil)
            }
            // Pinned before it is read: a module's channel that cannot be read is still mirrored.
            channelPins.record(repository: repository, tag: channel.rawValue, digest: manifest.digest)
            let what = "\(source.host)/\(repository):\(channel.rawValue)"
            let files = try await ImageFiles.read(["version.json"], client: client, repository: repository, manifest: manifest)
            guard let bytes = files["version.json"] else {
                return (channel, .failure(ChannelFailure(message: "\(what) has no version.json")))
            }
            guard let file = try? JSONDecoder().decode(ChannelVersionFile.self, from: Data(bytes)) else {
                return (channel, .failure(ChannelFailure(message: "\(what): version.json is not {\"version\": \"vX.Y.Z\", ...}")))
            }
            let written = file.version.hasPrefix("v") ? file.version : "v" + file.version
            guard let version = prerelease ? Version(releaseTag: written) : Version(tag: written) else {
                return (channel, .failure(ChannelFailure(message: "\(what): version.json says version \"\(file.version)\", which is not vX.Y.Z\(prerelease ? " or vX.Y.Z-PRE" : "")",
                                                         suspended: file.suspend ?? false)))
            }
            return (channel, .success(ChannelState(version: version, suspended: file.suspend ?? false)))
        }
        var read = ChannelRead()
        for (channel, outcome) in pairs {
            switch outcome {
            case let .success(state): read.states[channel] = state
            case let .failure(failure): read.failures[channel] = failure
            case nil: break
            }
        }
        return read
    }
}
