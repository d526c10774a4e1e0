import ArgumentParser
import Bundle
import DKP
import Foundation
import Mirror
import OCI
import Registry
import Version

struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Pull a DKP edition's images into d8-format tar bundles.",
        discussion: """
            Blobs stream from the registry straight to their place in the tars, hashed on the way; \
            tars appear under their final names only when complete, and re-running the same command \
            after an interruption resumes without downloading again what is already written.
            """)

    @Argument(help: "Directory for the bundle (created if missing).")
    var bundleDirectory: String

    @Option(help: "Edition root in the source registry.")
    var source = "registry.deckhouse.ru/deckhouse/ee"

    @Option(name: [.short, .long], help: "License key (env D8_MIRROR_LICENSE_TOKEN).")
    var license: String?

    @Option(help: "Source registry username (env D8_MIRROR_SOURCE_LOGIN).")
    var sourceLogin: String?

    @Option(help: "Source registry password (env D8_MIRROR_SOURCE_PASSWORD).")
    var sourcePassword: String?

    @Option(help: "Only this tag: a version (v1.69.3), a channel (stable) or a custom tag.")
    var deckhouseTag: String?

    @Flag(help: "Take the tag and edition from the running cluster (see `dkp-mirror detect`).")
    var detect = false

    @Option(help: ArgumentHelp("Kubeconfig for --detect (default: $KUBECONFIG, else ~/.kube/config).", valueName: "PATH"))
    var kubeconfig: String?

    @Option(help: "Lower bound of the default version range (default: the rock-solid version).")
    var sinceVersion: String?

    @Option(name: [.customShort("i"), .customLong("include-module")], help: "Only this module (repeatable), optionally with a semver constraint: NAME[@CONSTRAINT].")
    var includeModules: [String] = []

    @Option(name: [.customShort("e"), .customLong("exclude-module")], help: "Skip this module (repeatable).")
    var excludeModules: [String] = []

    @Flag(help: "Skip the platform (controller, installers, channels, platform images).")
    var noPlatform = false
    @Flag(help: "Skip modules.")
    var noModules = false
    @Flag(help: "Skip the security databases.")
    var noSecurityDb = false
    @Flag(help: "Skip the installer.")
    var noInstaller = false

    @Option(name: [.customShort("c"), .customLong("images-bundle-chunk-size")], help: "Cut each tar into chunks of N*10^9 bytes.")
    var chunkSize: Double?

    @Flag(help: "Also write a <file>.gostsum (GOST R 34.11-2012, Streebog-256) beside each tar or chunk, as d8 does.")
    var gostDigest = false

    @Flag(help: "Print the plan (references, blobs, bytes) and transfer nothing.")
    var dryRun = false

    @Flag(help: "Allow a bundle directory that holds other files.")
    var force = false

    @OptionGroup(title: "Source registry connection") var transport: TransportOptions

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if !includeModules.isEmpty && !excludeModules.isEmpty {
            throw ValidationError("--include-module and --exclude-module exclude each other")
        }
        if let chunkSize, chunkSize <= 0 || chunkSize * 1e9 < 4096 { throw ValidationError("--images-bundle-chunk-size must be a positive number of gigabytes (decimals allowed, at least 0.000004)") }
        if detect && deckhouseTag != nil { throw ValidationError("--detect and --deckhouse-tag exclude each other") }
        if kubeconfig != nil && !detect { throw ValidationError("--kubeconfig is only used with --detect") }
        if noPlatform && noModules && noSecurityDb && noInstaller { throw ValidationError("every part is skipped: nothing to pull") }
    }

    func run() async throws {
        var edition = try EditionSource(parsing: source)
        var selection = try makeSelection()
        if detect {
            let cluster: ClusterInfo
            do {
                cluster = try await ClusterDetector.detect(kubeconfig: Kubeconfig.load(path: kubeconfig))
            } catch let error as ClusterError where error.isUsageError {
                throw UsageError(error.description)
            }
            edition = edition.with(edition: cluster.edition)
            selection.deckhouseTag = cluster.tag
            writeErr("cluster runs \(cluster.tag), edition \(cluster.edition) (from \(cluster.editionSource)): pulling \(edition):\(cluster.tag)\n")
        }
        let directory = try prepareDirectory()

        var configuration = transport.configuration(common: common, credential: nil)
        configuration.optionNames.login = "--source-login"
        configuration.optionNames.password = "--source-password"
        let license = self.license ?? ProcessInfo.processInfo.environment["D8_MIRROR_LICENSE_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let license {
            configuration.credential = .licenseKey(license)
            configuration.optionNames.login = "--license"
            configuration.optionNames.password = "D8_MIRROR_LICENSE_TOKEN"
        } else {
            configuration.credential = try resolveCredential(
                host: edition.host, login: sourceLogin, password: sourcePassword, passwordStdin: false,
                names: ("--source-login", "--source-password", "--source-password"),
                environment: ("D8_MIRROR_SOURCE_LOGIN", "D8_MIRROR_SOURCE_PASSWORD"))
        }

        let client = try RegistryClient(host: edition.host, configuration: configuration)
        let renderer = ProgressRenderer.start(dryRun ? .none : common.progress)
        do {
            let discovery = EditionDiscovery(client: client, source: edition, concurrency: common.jobs)
            writeErr("discovering \(edition) ...\n")
            let found = try await discovery.discover(selection)
            for note in found.notes { writeErr("note: \(note)\n") }
            let puller = BundlePuller(client: client, jobs: common.jobs, progress: renderer.progress)
            let plan = try await puller.plan(found.images)
            if dryRun {
                renderer.finish(success: false)
                try printPlan(plan, found)
                await client.shutdown()
                return
            }
            writeErr("pulling \(plan.imageCount) references, \(plan.blobCount) blobs, \(formatBytes(plan.totalBytes)) into \(directory)\n")
            let result = try await puller.pull(plan, into: directory, chunkSize: chunkSize.map { Int64(($0 * 1e9).rounded()) })
            renderer.finish()
            if gostDigest {
                writeErr("writing GOST digests ...\n")
                try Checksums.writeGostsums(result.files.map { directory + "/" + $0 })
            }
            await client.shutdown()
            if common.json {
                try printJSON(result)
            } else {
                writeErr("pulled \(result.images) references, \(result.blobs) blobs into \(result.files.count) file(s): \(formatBytes(result.bytesTransferred)) downloaded"
                         + (result.bytesAlreadyPresent > 0 ? ", \(formatBytes(result.bytesAlreadyPresent)) already on disk" : "")
                         + " in \(String(format: "%.1f", result.seconds)) s (\(formatBytes(Int64(result.bytesPerSecond)))/s), peak memory \(formatBytes(result.peakResidentBytes))\n")
            }
        } catch {
            renderer.finish(success: false)
            await client.shutdown()
            throw error
        }
    }

    private func makeSelection() throws -> PullSelection {
        var selection = PullSelection()
        selection.deckhouseTag = deckhouseTag
        if let sinceVersion {
            guard let version = Version(tolerant: sinceVersion) else {
                throw UsageError("--since-version \(sinceVersion) is not a version; write it as v1.68.0")
            }
            selection.sinceVersion = version
        }
        for spec in includeModules {
            let parts = spec.split(separator: "@", maxSplits: 1).map(String.init)
            guard let name = parts.first, !name.isEmpty else { throw UsageError("--include-module needs NAME[@CONSTRAINT], got '\(spec)'") }
            selection.includeModules[name] = try parts.count > 1 ? VersionConstraint(parsing: parts[1]) : nil
        }
        selection.excludeModules = Set(excludeModules)
        selection.platform = !noPlatform
        selection.modules = !noModules
        selection.securityDatabases = !noSecurityDb
        selection.installer = !noInstaller
        return selection
    }

    /// Creates the directory; refuses one holding files that are not a bundle's, unless --force.
    private func prepareDirectory() throws -> String {
        let path = (bundleDirectory as NSString).standardizingPath
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw UsageError("\(path) is a file; BUNDLE_DIR must be a directory") }
            let foreign = (try manager.contentsOfDirectory(atPath: path)).filter { !Self.isBundleFile($0) }
            if !foreign.isEmpty && !force {
                throw UsageError("\(path) holds files that are not part of a bundle (\(foreign.prefix(3).joined(separator: ", "))); use an empty directory or pass --force")
            }
        } else if !dryRun {
            do {
                try manager.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw UsageError("cannot create \(path): \(error.localizedDescription)")
            }
        }
        return path
    }

    static func isBundleFile(_ name: String) -> Bool {
        name == "SHA256SUMS" || name == ".dkp-mirror" || name == "deckhousereleases.yaml"
            || [".tar", ".chunk", ".partial", ".journal", ".gostsum", ".tmp"].contains { name.hasSuffix($0) }
    }

    private func printPlan(_ plan: BundlePlan, _ found: DiscoveredEdition) throws {
        if common.json {
            struct Output: Encodable {
                var references: [BundleImage]; var versions: [String]; var channels: [String: String]
                var modules: [String: [String]]; var blobs: Int; var bytes: Int64; var files: [String]
            }
            try printJSON(Output(references: plan.references, versions: found.platformVersions, channels: found.channels,
                                 modules: found.modules, blobs: plan.blobCount, bytes: plan.totalBytes, files: plan.tarNames))
            return
        }
        for image in plan.references.sorted(by: { ($0.tar, $0.refName) < ($1.tar, $1.refName) }) {
            print("\(image.tar)\t\(image.refName)")
        }
        if !found.platformVersions.isEmpty { print("versions: \(found.platformVersions.joined(separator: " "))") }
        for (name, versions) in found.modules.sorted(by: { $0.key < $1.key }) { print("module \(name): \(versions.joined(separator: " "))") }
        print("plan: \(plan.imageCount) references, \(plan.blobCount) blobs, \(plan.totalBytes) bytes (\(formatBytes(plan.totalBytes))) in \(plan.tarNames.joined(separator: ", "))")
    }
}
