import ArgumentParser
import Bundle
import Cluster
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

    @Flag(help: "Read the license key from stdin (out of the process list and the shell's history).")
    var licenseStdin = false

    @Option(help: "Source registry username (env D8_MIRROR_SOURCE_LOGIN).")
    var sourceLogin: String?

    @Option(help: "Source registry password (env D8_MIRROR_SOURCE_PASSWORD).")
    var sourcePassword: String?

    @Flag(help: "Read the source registry password from stdin.")
    var sourcePasswordStdin = false

    @Option(help: "Only this tag: a version (v1.69.3), a channel (stable) or a custom tag.")
    var deckhouseTag: String?

    @Flag(help: "Take the tag and edition from the running cluster (see `dkp-mirror detect`).")
    var detect = false

    @Option(help: ArgumentHelp("Kubeconfig for --detect (default: $KUBECONFIG, else ~/.kube/config).", valueName: "PATH"))
    var kubeconfig: String?

    @Option(help: "Lower bound of the default version range (default: the rock-solid version; with only an lts channel, the lts version).")
    var sinceVersion: String?

    @Option(help: ArgumentHelp("Platform versions within this semver range instead of the rock-solid..alpha window: the latest patch of each minor plus the versions a >= or <= names; =vX.Y.Z pins one version as --deckhouse-tag does. Quote it: the shell eats '>'.", valueName: "CONSTRAINT"))
    var includePlatform: String?

    @Option(help: ArgumentHelp("Tag of <registry root>/installer to pull (absent in the source: a warning, no installer in the bundle).", valueName: "TAG"))
    var installerTag = "latest"

    @Option(name: [.customShort("i"), .customLong("include-module")], help: "Only this module (repeatable), optionally NAME@CONSTRAINT in d8's dialect: =v1.3.0 pins it onto every channel (=v1.3.0+stable onto one, =TAG a custom tag), 1.3.0 means >=1.3.0 <2.0.0, ^1.3, ~1.3, '>=1.1 <1.3' (latest patch per minor, plus every channel's version). A name given twice takes either.")
    var includeModules: [String] = []

    @Option(name: [.customShort("e"), .customLong("exclude-module")], help: "Skip this module (repeatable); NAME@CONSTRAINT skips all of it, as in d8.")
    var excludeModules: [String] = []

    @Option(name: .customLong("include-package"), help: "Only this package (repeatable), optionally NAME@CONSTRAINT, as --include-module.")
    var includePackages: [String] = []

    @Option(name: .customLong("exclude-package"), help: "Skip this package (repeatable); NAME@CONSTRAINT skips all of it, as in d8.")
    var excludePackages: [String] = []

    @Option(name: .customLong("include-plugin"), help: "Also pull this d8 plugin (repeatable): NAME[@CONSTRAINT], bare NAME is its newest stable version. Plugins whose contract requires a module in the bundle are added on their own.")
    var includePlugins: [String] = []

    @Flag(help: "Skip the platform (controller, installers, channels, platform images).")
    var noPlatform = false
    @Flag(help: "Skip modules.")
    var noModules = false
    @Flag(help: "Skip the security databases.")
    var noSecurityDb = false
    @Flag(help: "Skip the installer.")
    var noInstaller = false
    @Flag(help: "Skip packages (package-versions.tar, the catalog of package versions, is still written, as d8 does).")
    var noPackages = false

    @Flag(help: "Modules and packages: pull only their extra images.")
    var onlyExtraImages = false
    @Flag(help: "Do not look up VEX attestations (<image>:sha256-<hex>.att).")
    var skipVexImages = false
    @Flag(help: "Pull release channels whose version.json says \"suspend\": true (refused otherwise).")
    var ignoreSuspend = false
    @Flag(help: "The source has no tags-list API: find versions by probing tags; needs --include-platform (or --deckhouse-tag) and --include-module NAME@CONSTRAINT.")
    var proxyRegistry = false
    @Flag(help: "Start from scratch: discard what earlier runs of this pull wrote instead of resuming.")
    var noPullResume = false
    @Option(help: ArgumentHelp("Where modules live in the source, relative to --source (\"/\" for the edition root itself; empty: the default, as d8 reads it); the bundle always names them modules/<name>.", valueName: "PATH"),
            transform: { $0.isEmpty ? "/modules" : $0 })
    var modulesPathSuffix = "/modules"
    @Option(help: ArgumentHelp("Where packages live in the source, relative to --source, as --modules-path-suffix; the bundle always names them packages/<name>.", valueName: "PATH"),
            transform: { $0.isEmpty ? "/packages" : $0 })
    var packagesPathSuffix = "/packages"
    @Option(help: ArgumentHelp("Accepted for d8 compatibility and unused: dkp-mirror writes every blob in place in the final tars and needs no temporary directory.", valueName: "DIR"))
    var tmpDir: String?
    @Flag(help: "List every module, package and plugin version in the final summary.")
    var verboseSummary = false

    @Option(name: [.customShort("c"), .customLong("images-bundle-chunk-size")], help: "Cut each tar into chunks of N*10^9 bytes.")
    var chunkSize: Double?

    @Flag(help: "Also write a <file>.gostsum (GOST R 34.11-2012, Streebog-256) beside each tar or chunk, as d8 does.")
    var gostDigest = false

    @Option(name: .customLong("against"), help: ArgumentHelp("A differential bundle: leave out every blob this inventory (dkp-mirror inventory) lists; repeatable. The bundle lists them in left-out-blobs.inventory; only dkp-mirror push can push it.", valueName: "FILE"))
    var against: [String] = []

    @Flag(help: "Print the plan (references, blobs, bytes) and transfer nothing.")
    var dryRun = false

    @Flag(help: "Allow a bundle directory that holds other files, and replace a bundle of another pull there (its files are removed once the new bundle is complete).")
    var force = false

    @OptionGroup(title: "Source registry connection") var transport: TransportOptions

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if !includeModules.isEmpty && !excludeModules.isEmpty {
            throw ValidationError("--include-module and --exclude-module exclude each other")
        }
        // 0 is d8's default, "no chunks": runbooks pass it.
        if let chunkSize, chunkSize != 0, !chunkSize.isFinite || chunkSize * 1e9 < 4096 || chunkSize * 1e9 > 9e18 {
            throw ValidationError("--images-bundle-chunk-size must be 0 (no chunks) or a positive number of gigabytes (decimals allowed, at least 0.000004)")
        }
        if detect && deckhouseTag != nil { throw ValidationError("--detect and --deckhouse-tag exclude each other") }
        try validateSourceCredentialFlags()
        if !includePackages.isEmpty && !excludePackages.isEmpty {
            throw ValidationError("--include-package and --exclude-package exclude each other")
        }
        if includePlatform != nil && (deckhouseTag != nil || detect) {
            throw ValidationError("--include-platform and --deckhouse-tag (or --detect) exclude each other: a range or one tag")
        }
        if sinceVersion != nil && (deckhouseTag != nil || includePlatform != nil || detect) {
            throw ValidationError("--since-version and --deckhouse-tag, --include-platform or --detect exclude each other (as in d8): "
                                  + "--since-version widens the default channel window; a tag or a constraint replaces that window")
        }
        if proxyRegistry && includePlatform == nil && deckhouseTag == nil && !detect && !noPlatform {
            throw ValidationError("--proxy-registry cannot list versions: pass --include-platform CONSTRAINT or --deckhouse-tag TAG")
        }
        if kubeconfig != nil && !detect { throw ValidationError("--kubeconfig is only used with --detect") }
        if onlyExtraImages && !includePlugins.isEmpty {
            throw ValidationError("--only-extra-images pulls modules' and packages' extra images only, no plugins: run --include-plugin in a pull of its own")
        }
        if noPlatform && noModules && includeModules.isEmpty && noSecurityDb && noInstaller && noPackages && includePlugins.isEmpty { throw ValidationError("every part is skipped: nothing to pull") }
    }

    func run() async throws {
        // As d8 takes it: http:// or https:// in front (agreeing with --insecure), a trailing slash.
        let root = try parseTarget(source, what: "--source", insecure: transport.insecure)
        guard root.tag == nil, root.digest == nil else {
            throw UsageError("--source \(source) names an image; give the edition root, e.g. registry.deckhouse.ru/deckhouse/ee")
        }
        var edition = EditionSource(root)
        var selection = try makeSelection()
        // Read before any request: a damaged inventory is exit code 2, naming the file.
        let againstInventories = against.isEmpty ? nil : try AgainstInventories.load(against)
        if detect {
            let cluster: ClusterInfo
            do {
                var options = ClusterDetector.Options()
                options.proxies = common.network.proxies
                options.trustRoots = common.network.trustRoots
                let config = try await Kubeconfig.load(path: kubeconfig).resolvingCredentials()
                cluster = try await ClusterDetector.detect(kubeconfig: config, options: options)
            } catch let error as ClusterError where error.isUsageError {
                throw UsageError(error.description)
            }
            edition = edition.with(edition: cluster.edition)
            selection.deckhouseTag = cluster.tag
            writeErr("cluster runs \(cluster.tag), edition \(cluster.edition) (from \(cluster.editionSource)): pulling \(edition):\(cluster.tag)\n")
        }
        let configuration = try sourceConfiguration(host: edition.host)
        let (directory, created) = try prepareDirectory()

        let client = try RegistryClient(host: edition.host, configuration: configuration)
        let renderer = ProgressRenderer.start(dryRun ? .none : common.progress)
        do {
            let discovery = EditionDiscovery(client: client, source: edition, concurrency: common.jobs,
                                             modulesPathSuffix: modulesPathSuffix, packagesPathSuffix: packagesPathSuffix)
            writeErr("discovering \(edition) ...\n")
            let found = try await discovery.discover(selection)
            for note in found.notes { writeErr("note: \(note)\n") }
            for (catalog, suffix, pulled) in [("modules", modulesPathSuffix, !found.modules.isEmpty), ("packages", packagesPathSuffix, !found.packages.isEmpty)] {
                let path = LayoutRepositories.path(ofSuffix: suffix)
                if path != catalog, pulled {
                    writeErr("note: \(catalog) are read from \(edition)/\(path), not from the standard \(edition)/\(catalog) (--\(catalog)-path-suffix)\n")
                }
            }
            releaseFreedMemory()
            let puller = BundlePuller(client: client, jobs: common.jobs, progress: renderer.progress)
            let plan = try await puller.plan(found.images, against: againstInventories, pinned: found.channelDigests)
            if dryRun {
                renderer.finish(success: false)
                try printPlan(plan, found)
                await client.shutdown()
                return
            }
            writeErr("pulling \(plan.imageCount) references, \(plan.blobCount) blobs, \(formatBytes(plan.totalBytes)) into \(directory)\n")
            let result = try await puller.pull(plan, into: directory, chunkSize: chunkSize.flatMap { $0 == 0 ? nil : Int64(($0 * 1e9).rounded()) },
                                               resume: !noPullResume, replacing: force, gostsums: gostDigest)
            renderer.finish()
            // deckhousereleases.yaml only for range pulls (d8: a pinned bundle relies on its channel aliases).
            if selection.pinnedTag == nil && !found.releases.isEmpty {
                let releases = try DeckhouseReleases.yaml(found.releases)
                for note in releases.notes { writeErr("note: \(note)\n") }
                try AtomicFile.write(directory + "/deckhousereleases.yaml", Array(releases.text.utf8))
            }
            await client.shutdown()
            let summary = PullSummary(found: found, result: result, bundleBytes: plan.totalBytes)
            if againstInventories != nil { Self.noteDifferential(result) }
            if common.json {
                try printJSON(PullOutput(result: result, summary: summary))
            } else {
                Self.printResult(result, summary, verbose: verboseSummary)
            }
        } catch {
            renderer.finish(success: false)
            await client.shutdown()
            // A directory this run made and left empty (the pull failed before writing) goes
            // again; rmdir leaves anything that holds a file.
            if created { rmdir(directory) }
            throw error
        }
    }

    private static func printResult(_ result: PullResult, _ summary: PullSummary, verbose: Bool) {
        writeErr("pulled \(result.images) references, \(result.blobs) blobs into \(result.files.count) file(s): \(formatBytes(result.bytesTransferred)) downloaded"
                 + (result.bytesAlreadyPresent > 0 ? ", \(formatBytes(result.bytesAlreadyPresent)) already on disk" : "")
                 + " in \(String(format: "%.1f", result.seconds)) s (\(formatBytes(Int64(result.bytesPerSecond)))/s), peak memory \(formatBytes(result.peakResidentBytes))\n")
        writeErr(summary.text(verbose: verbose))
    }

    /// What `--against` left out, or that it left out nothing.
    static func noteDifferential(_ result: PullResult) {
        guard result.leftOutBlobs > 0 else {
            writeErr("nothing of this pull is in the inventories given with --against: the bundle is complete\n")
            return
        }
        writeErr("differential bundle: \(result.leftOutBlobs) blobs (\(formatBytes(result.leftOutBytes))) left out, listed in "
                 + "\(DifferentialBundle.fileName); push it with dkp-mirror push into the registry the inventory was taken of (d8 cannot push it)\n")
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
        if let includePlatform {
            selection.includePlatform = try VersionConstraint(parsing: includePlatform)
        }
        selection.includeModules = try Self.namedConstraints(includeModules, flag: "--include-module")
        selection.excludeModules = try Self.excludedNames(excludeModules, flag: "--exclude-module")
        selection.includePackages = try Self.namedConstraints(includePackages, flag: "--include-package")
        selection.excludePackages = try Self.excludedNames(excludePackages, flag: "--exclude-package")
        selection.includePlugins = try Self.namedConstraints(includePlugins, flag: "--include-plugin")
        selection.platform = !noPlatform
        // The list names the modules wanted, so it wins over --no-modules (d8 #417).
        if noModules && !includeModules.isEmpty {
            writeErr("note: --no-modules is ignored because --include-module is set; pulling only the modules it names, as d8 does\n")
        }
        selection.modules = !noModules || !includeModules.isEmpty
        selection.packages = !noPackages
        selection.securityDatabases = !noSecurityDb
        selection.installer = !noInstaller
        selection.installerTag = installerTag
        selection.onlyExtraImages = onlyExtraImages
        selection.skipVex = skipVexImages
        selection.ignoreSuspend = ignoreSuspend
        selection.proxyRegistry = proxyRegistry
        return selection
    }

    /// `NAME[@CONSTRAINT]` values of a repeatable filter flag.
    static func namedConstraints(_ specs: [String], flag: String) throws -> [String: VersionConstraint?] {
        var result: [String: VersionConstraint?] = [:]
        for spec in specs {
            let parts = spec.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let name = parts.first, !name.isEmpty else { throw UsageError("\(flag) needs NAME[@CONSTRAINT], got '\(spec)'") }
            if parts.count > 1 && parts[1].isEmpty {
                throw UsageError("\(flag) \(spec): the constraint after '@' is empty; if you wrote \(name)@>=1.2 unquoted, the shell took '>' as a redirection: quote it, '\(name)@>=1.2'")
            }
            let constraint = try parts.count > 1 ? VersionConstraint(parsing: parts[1]) : nil
            // A name given twice takes either constraint, as d8 OR-combines them; a bare name adds nothing.
            switch (result[name] ?? nil, constraint) {
            case let (earlier?, later?): result[name] = earlier.or(later)
            case let (earlier?, nil): result[name] = earlier
            default: result[name] = constraint
            }
        }
        return result
    }

    /// The names of `--exclude-module` / `--exclude-package` values: d8 takes `NAME[@CONSTRAINT]`
    /// there too and leaves the whole module out whatever the constraint, so the constraint is
    /// only checked, and said to be ignored.
    static func excludedNames(_ specs: [String], flag: String) throws -> Set<String> {
        var names = Set<String>()
        for (name, constraint) in try namedConstraints(specs, flag: flag) {
            if let constraint {
                writeErr("note: \(flag) \(name)@\(constraint) leaves all of \(name) out, as d8 does; the version part is ignored\n")
            }
            names.insert(name)
        }
        return names
    }

    /// Creates the directory; refuses one holding files that are not a bundle's, unless --force.
    /// The bundle directory, and whether this run made it.
    private func prepareDirectory() throws -> (path: String, created: Bool) {
        let path = (bundleDirectory as NSString).standardizingPath
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw UsageError("\(path) is a file; BUNDLE_DIR must be a directory") }
            let foreign = (try manager.contentsOfDirectory(atPath: path)).filter { !Self.isBundleFile($0) }
            if !foreign.isEmpty && !force {
                throw UsageError("\(path) holds files that are not part of a bundle (\(foreign.prefix(3).joined(separator: ", "))); use an empty directory or pass --force")
            }
            // Found now, not after discovery as a failed write would be.
            if !dryRun && access(path, W_OK | X_OK) != 0 {
                throw UsageError("cannot write into \(path): \(String(cString: strerror(errno))); make it writable for this user, or pull into another directory")
            }
        } else if !dryRun {
            do {
                try manager.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw UsageError("cannot create \(path): \(error.localizedDescription)")
            }
            return (path, true)
        }
        return (path, false)
    }

    static func isBundleFile(_ name: String) -> Bool {
        name == "SHA256SUMS" || name == ".dkp-mirror" || name == "deckhousereleases.yaml" || name == DifferentialBundle.fileName
            || [".tar", ".chunk", ".partial", ".journal", ".gostsum", ".tmp"].contains { name.hasSuffix($0) }
    }

    private func printPlan(_ plan: BundlePlan, _ found: DiscoveredEdition) throws {
        if common.json {
            struct Output: Encodable {
                var references: [BundleImage]; var versions: [String]; var channels: [String: String]
                var modules: [String: [String]]; var packages: [String: [String]]; var plugins: [String: [String]]
                var vexImages: Int; var blobs: Int; var bytes: Int64; var files: [String]
                var leftOutBlobs: Int; var leftOutBytes: Int64
            }
            try printJSON(Output(references: plan.references, versions: found.platformVersions, channels: found.channels,
                                 modules: found.modules, packages: found.packages, plugins: found.plugins, vexImages: found.vexImages,
                                 blobs: plan.blobCount, bytes: plan.totalBytes, files: plan.tarNames,
                                 leftOutBlobs: plan.leftOutBlobCount, leftOutBytes: plan.leftOutBytes))
            return
        }
        for image in plan.references.sorted(by: { ($0.tar, $0.refName) < ($1.tar, $1.refName) }) {
            print("\(image.tar)\t\(image.refName)")
        }
        if !found.platformVersions.isEmpty { print("versions: \(found.platformVersions.joined(separator: " "))") }
        for (kind, entries) in [("module", found.modules), ("package", found.packages), ("plugin", found.plugins)] {
            for (name, versions) in entries.sorted(by: { $0.key < $1.key }) { print("\(kind) \(name): \(versions.joined(separator: " "))") }
        }
        if found.vexImages > 0 { print("VEX attestations: \(found.vexImages)") }
        if against.count > 0 {
            print("left out (--against): \(plan.leftOutBlobCount) blobs, \(plan.leftOutBytes) bytes (\(formatBytes(plan.leftOutBytes))) the inventories list")
        }
        print("plan: \(plan.imageCount) references, \(plan.blobCount) blobs, \(plan.totalBytes) bytes (\(formatBytes(plan.totalBytes))) in \(plan.tarNames.joined(separator: ", "))")
    }
}
