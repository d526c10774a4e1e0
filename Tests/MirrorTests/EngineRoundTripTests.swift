import Bundle
import DKP
import Foundation
import Mirror
import OCI
import Registry
import Testing
import TestSupport

/// The engines driven in-process, without the executable: discovery and plan, pull into a
/// bundle, verify, push into a TLS + password registry, push again. The end-to-end tests
/// drive the same path through `dkp-mirror`; these show the library alone does the job.
@Suite struct EngineRoundTripTests {
    static let password = "engine-pw-7"

    static func seededSource() async throws -> TestRegistry {
        let registry = try await TestRegistry.start()
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        _ = try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            try await EditionSeeder(client: client, options: EditionSeeder.Options()).seed()
        }
        return registry
    }

    /// Pulls the pinned v1.69.3 platform, security databases and installer (no modules or
    /// packages, to keep it small) from `source` into `directory`.
    static func pull(from source: TestRegistry, into directory: String) async throws -> (BundlePlan, PullResult) {
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        return try await RegistryClient.with(host: source.host, configuration: configuration) { client in
            var selection = PullSelection()
            selection.deckhouseTag = "v1.69.3"
            selection.modules = false
            selection.packages = false
            let edition = EditionSource(try Reference(parsing: "\(source.host)/deckhouse/ee"))
            let found = try await EditionDiscovery(client: client, source: edition, concurrency: 4).discover(selection)
            let puller = BundlePuller(client: client, jobs: 4, progress: TransferProgress())
            let plan = try await puller.plan(found.images)
            return (plan, try await puller.pull(plan, into: directory, chunkSize: nil))
        }
    }

    static func push(_ bundle: BundleIndex, to target: TestRegistry) async throws -> (PushPlan, PushResult) {
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.credential = Credential(username: "rw", password: password)
        return try await RegistryClient.with(host: target.host, configuration: configuration) { client in
            let pusher = BundlePusher(client: client, bundle: bundle, target: try Reference(parsing: "\(target.host)/system/deckhouse"),
                                      modulesPathSuffix: "/modules", jobs: 4, progress: TransferProgress())
            let plan = try pusher.plan()
            return (plan, try await pusher.push(plan))
        }
    }

    @Test func pullVerifyPushAndPushAgainInProcess() async throws {
        let source = try await Self.seededSource()
        let directory = try TestRegistry.temporaryDirectory("dkp-engine-bundle").path
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let (plan, pulled) = try await Self.pull(from: source, into: directory)
        #expect(pulled.images == plan.imageCount)
        #expect(pulled.bytesAlreadyPresent == 0)
        #expect(Set(pulled.files).isSuperset(of: ["platform.tar", "security.tar", "installer.tar"]), "\(pulled.files)")

        let bundle = try BundleIndex.open(directory: directory)
        let report = await BundleVerifier(bundle: bundle, directory: directory).verify()
        #expect(report.ok, "\(report.problems)")
        #expect(report.references == plan.imageCount)

        let target = try await TestRegistry.start(tls: true, users: ["rw": Self.password])
        let (pushPlan, pushed) = try await Self.push(bundle, to: target)
        #expect(pushed.failures.isEmpty, "\(pushed.failures)")
        #expect(pushPlan.problems.isEmpty, "\(pushPlan.problems)")
        #expect(pushed.blobsUploaded > 0)

        // Every descriptor of every layout is in the target under its short tag, with its digest.
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.credential = Credential(username: "rw", password: Self.password)
        let layouts = LayoutRepositories(root: "system/deckhouse", modulesPathSuffix: "/modules", packagesPathSuffix: "/packages")
        let checked = try await RegistryClient.with(host: target.host, configuration: configuration) { client in
            var checked = 0
            for layout in bundle.layouts {
                let repository = layouts.repository(for: layout.path)
                for descriptor in layout.descriptors {
                    let tag = descriptor.annotations?["io.deckhouse.image.short_tag"] ?? descriptor.digest.string
                    let found = try await client.manifestDescriptor(repository: repository, reference: tag)
                    #expect(found?.digest == descriptor.digest, "\(repository):\(tag)")
                    checked += 1
                }
            }
            return checked
        }
        #expect(checked == report.references)

        // A second push finds everything in place: no blob bytes move.
        let (_, again) = try await Self.push(bundle, to: target)
        #expect(again.failures.isEmpty)
        #expect(again.bytesUploaded == 0)
        #expect(again.blobsUploaded == 0)
        withExtendedLifetime(source) {}
    }

    /// A release moves a channel tag between discovery (which read its version.json) and the
    /// plan: the bundle holds the channel image discovery read, not the moved one, so the
    /// channel never names a version whose images the bundle lacks.
    @Test func aChannelThatMovesAfterDiscoveryIsPulledAsDiscoveryReadIt() async throws {
        let source = try await Self.seededSource()
        let directory = try TestRegistry.temporaryDirectory("dkp-engine-moved").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        let (read, moved) = try await RegistryClient.with(host: source.host, configuration: configuration) { client in
            // A range: its channels come under their own tags (a pinned pull retags its version's image).
            var selection = PullSelection()
            selection.includePlatform = try VersionConstraint(parsing: ">=1.69 <1.71")
            selection.modules = false
            selection.packages = false
            let edition = EditionSource(try Reference(parsing: "\(source.host)/deckhouse/ee"))
            let found = try await EditionDiscovery(client: client, source: edition, concurrency: 4).discover(selection)
            let channels = "deckhouse/ee/release-channel"
            let beta = try #require(found.channelDigests["\(channels):beta"], "\(found.channelDigests)")
            // The release: beta now points where alpha does (v1.70.1).
            let alpha = try await client.manifest(repository: channels, reference: "alpha")
            try await client.putManifest(repository: channels, reference: "beta", bytes: alpha.bytes, mediaType: alpha.mediaType)
            let puller = BundlePuller(client: client, jobs: 4, progress: TransferProgress())
            let plan = try await puller.plan(found.images, pinned: found.channelDigests)
            _ = try await puller.pull(plan, into: directory, chunkSize: nil)
            return (beta, alpha.digest)
        }
        #expect(read != moved)
        let bundle = try BundleIndex.open(directory: directory)
        let channels = try #require(bundle.layouts.first { $0.path == "release-channel" })
        let beta = channels.descriptors.first { $0.annotations?["io.deckhouse.image.short_tag"] == "beta" }
        #expect(beta?.digest == read, "the bundle's beta is \(beta?.digest.string ?? "missing")")
        withExtendedLifetime(source) {}
    }
}
