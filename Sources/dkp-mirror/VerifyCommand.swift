import ArgumentParser
import Bundle
import Cluster
import DKP
import Foundation
import Mirror
import OCI
import Registry

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a bundle offline, or with --registry (--cluster: the cluster's own registry and item list) that a registry holds every image the bundle requires.",
        discussion: """
            Offline: SHA256SUMS, every tar readable, every layout's oci-layout and index.json, every \
            blob's digest and size, every manifest's config, layers and children present, every digest \
            the bundle's images_digests.json files require present, every channel's controller present. \
            With --registry TARGET: builds the item list of the cluster's RegistryContainsRequiredImages \
            check (every digest of the controller image's images_digests.json, deduplicated, labelled \
            module/<module>/<image>; the deckhouse Deployment's images by tag: from the bundle the \
            controller image, with --kubeconfig the running Deployment's containers and initContainers, \
            their repository replaced by TARGET), HEADs each with 3 workers as the cluster does (or -j) \
            and reports in the cluster's words, starting with Mode: Default or Mode: Relax; then checks \
            the rest of the bundle as push maps it (every tag of every layout, children by digest, \
            discovery tags: each there with the bundle's digest) and reports it in the same shape, \
            unless --only-cluster-list. --cluster takes TARGET, its read-write user and CA from the cluster as \
            push --cluster does, and the item list from the running Deployment (--kubeconfig). Descriptors \
            without a short tag, and tags given two digests, are reported as warnings (what push will \
            do with them). --deep also decompresses every image layer and checks \
            its SHA-256 against the image config's rootfs.diff_ids. Each byte of the bundle is read once; \
            whole-file and blob hashes run on all cores. Exit 1 when anything is missing or corrupt, \
            2 when the bundle cannot be read (a missing chunk, a truncated tar, an unsafe entry name).
            """)

    @Argument(help: "The bundle directory.")
    var bundleDirectory: String

    @Option(help: "Check this registry (HOST[:PORT]/PATH) instead of the bundle's own integrity.")
    var registry: String?

    @Flag(help: "Also decompress every layer (gzip, zstd) and check it against its image config's rootfs.diff_ids.")
    var deep = false

    @Option(help: ArgumentHelp("With --registry: take the deckhouse Deployment (containers, initContainers, the running version) from this cluster; with --cluster, the kubeconfig of the cluster (default: $KUBECONFIG, else ~/.kube/config).", valueName: "PATH"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("With --registry: default (every image the cluster needs) or relax (only the deckhouse container's image, as the cluster checks on an edition switch).", valueName: "MODE"))
    var checkMode: RegistryCompleteness.Mode = .default

    @Flag(help: "With --registry: check only the cluster's own item list, not the rest of the bundle (every tag, children by digest, discovery tags).")
    var onlyClusterList = false

    @OptionGroup(title: "Registry") var registryOptions: TargetRegistryOptions
    @OptionGroup(title: "Cluster") var clusterOptions: ClusterTargetOptions
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let directory = (bundleDirectory as NSString).standardizingPath
        let bundle = try openBundle(directory)
        let verifier = BundleVerifier(bundle: bundle, directory: directory)
        if clusterOptions.cluster {
            try ClusterTarget.checkUsage(registryOptions, target: registry.map { "--registry \($0)" }, command: "verify")
            if deep { throw UsageError("--deep checks the bundle's layers offline; it does not go with --cluster") }
            // The cluster's registry, and the cluster's own item list from its running Deployment.
            let found = try await ClusterTarget.resolve(kubeconfig: kubeconfig, options: clusterOptions,
                                                        registryOptions: registryOptions, common: common)
            defer { found.cleanup() }
            try await checkRegistry(found.reference, configuration: found.configuration, bundle: bundle, verifier: verifier)
            return
        }
        if registry == nil, kubeconfig != nil || checkMode != .default || onlyClusterList || clusterOptions.registryAddress != nil {
            throw UsageError("--kubeconfig, --check-mode and --only-cluster-list go with --registry TARGET or --cluster")
        }
        if let registry {
            if deep { throw UsageError("--deep checks the bundle's layers offline; it does not go with --registry") }
            let target = try parseTarget(registry, what: "--registry", insecure: registryOptions.transport.insecure)
            guard target.tag == nil, target.digest == nil else {
                throw UsageError("--registry \(registry) names an image; give HOST[:PORT]/PATH")
            }
            let configuration = try registryOptions.configuration(host: target.host, common: common)
            try await checkRegistry(target, configuration: configuration, bundle: bundle, verifier: verifier)
            return
        }
        let report = await verifier.verify(deep: deep)
        if common.json {
            try printJSON(report)
        } else {
            for warning in report.warnings { print("warning: \(warning)") }
            for problem in report.problems { print("problem: \(problem.message)") }
            let summary = "\(report.files) file(s), \(report.layouts) layouts, \(report.references) references, \(report.blobs) blobs, \(formatBytes(report.bytesHashed)) read and hashed in \(String(format: "%.1f", report.seconds - (report.deep?.seconds ?? 0))) s (\(formatBytes(Int64(report.bytesPerSecond)))/s)"
            var line = summary
            if let deep = report.deep { line += "; " + Self.describe(deep) }
            if let differential = report.differential {
                line += "; differential bundle: \(differential.leftOutBlobs) blobs (\(formatBytes(differential.leftOutBytes))) left out, "
                    + "listed in \(DifferentialBundle.fileName) (\(differential.source)); only dkp-mirror push can push it, into a registry holding them"
            }
            print(report.ok ? "bundle OK: \(line)" : "bundle has \(report.problems.count) problem(s): \(line)")
        }
        if !report.ok { throw ExitCode(1) }
    }

    /// `--deep: 4 layers checked against their diff_ids (3 decompressed, 1.2 MB -> 3.4 MB in 0.1 s; 1 plain tar by its digest)`.
    static func describe(_ deep: DeepSummary) -> String {
        var parts: [String] = []
        let decompressed = deep.layers - deep.plainLayers
        if decompressed > 0 {
            parts.append("\(decompressed) decompressed, \(formatBytes(deep.compressedBytes)) -> \(formatBytes(deep.uncompressedBytes))"
                + " in \(String(format: "%.1f", deep.seconds)) s")
        }
        if deep.plainLayers > 0 {
            parts.append(deep.plainLayers == 1 ? "1 plain tar by its digest" : "\(deep.plainLayers) plain tars by their digest")
        }
        var line = "--deep: \(deep.layers) layer\(deep.layers == 1 ? "" : "s") checked against their diff_ids"
        if !parts.isEmpty { line += " (" + parts.joined(separator: "; ") + ")" }
        if deep.skipped > 0 { line += ", \(deep.skipped) non-image layers skipped" }
        return line
    }

    private func checkRegistry(_ target: Reference, configuration: RegistryConfiguration, bundle: BundleIndex,
                               verifier: BundleVerifier) async throws {
        var deployment: RegistryCompleteness.Deployment?
        if kubeconfig != nil || clusterOptions.cluster {
            deployment = try await Self.deployment(kubeconfig: kubeconfig, network: common.network)
        }
        let client = try RegistryClient(host: target.host, configuration: configuration)
        do {
            // The rest of the bundle, as push maps it (the same suffixes, the same short tag rule).
            var pusher = BundlePusher(client: client, bundle: bundle, target: target, modulesPathSuffix: registryOptions.modulesPathSuffix,
                                      packagesPathSuffix: registryOptions.packagesPathSuffix, jobs: common.jobs, progress: TransferProgress())
            pusher.leftOut = try DifferentialBundle.leftOut(inBundle: verifier.directory)
            let plan = onlyClusterList ? nil : try pusher.plan()
            let checker = RegistryCompleteness(client: client, target: target, verifier: verifier, jobs: Self.workers(common),
                                               mode: checkMode, deployment: deployment, bundlePlan: plan, bundleJobs: common.jobs)
            let report = try await checker.check()
            await client.shutdown()
            for warning in report.warnings { writeErr("warning: \(warning)\n") }
            if common.json { try printJSON(report) } else { print(report.text) }
            if !report.ok { throw ExitCode(1) }
        } catch {
            await client.shutdown()
            throw error
        }
    }

    /// The cluster checks with 3 workers per registry; `-j N` given on the command line overrides that.
    static func workers(_ common: CommonOptions) -> Int {
        let given = CommandLine.arguments.contains { $0 == "-j" || $0 == "--jobs" || $0.hasPrefix("--jobs=") || ($0.hasPrefix("-j") && Int($0.dropFirst(2)) != nil) }
        return given ? common.jobs : 3
    }

    /// The images of deployment d8-system/deckhouse of the cluster `path` points at.
    static func deployment(kubeconfig path: String?, network: NetworkOptions) async throws -> RegistryCompleteness.Deployment {
        do {
            let config = try await Kubeconfig.load(path: path, context: nil).resolvingCredentials()
            let deployment = try await KubeClient.with(kubeconfig: config, proxies: network.proxies, trustRoots: network.trustRoots) {
                try await $0.deckhouseDeployment()
            }
            return RegistryCompleteness.Deployment(
                containers: deployment.containers.compactMap { c in c.image.map { (c.name, $0) } },
                initContainers: deployment.initContainers.compactMap { c in c.image.map { (c.name, $0) } })
        } catch let error as ClusterError where error.isUsageError {
            throw UsageError(error.description)
        }
    }
}

extension RegistryCompleteness.Mode: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(rawValue: argument.lowercased())
    }
}
