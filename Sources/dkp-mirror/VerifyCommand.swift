import ArgumentParser
import Bundle
import Foundation
import Mirror
import OCI
import Registry

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a bundle offline, or with --registry that a registry holds every image the bundle requires.",
        discussion: """
            Offline: SHA256SUMS, every tar readable, every layout's oci-layout and index.json, every \
            blob's digest and size, every manifest's config, layers and children present, every digest \
            the bundle's images_digests.json files require present, every channel's controller present. \
            With --registry TARGET: HEADs every required image in TARGET and reports like the cluster's \
            RegistryContainsRequiredImages check. --deep also decompresses every image layer and checks \
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

    @OptionGroup(title: "Registry") var registryOptions: TargetRegistryOptions
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let directory = (bundleDirectory as NSString).standardizingPath
        let bundle = try openBundle(directory)
        let verifier = BundleVerifier(bundle: bundle, directory: directory)
        if let registry {
            if deep { throw UsageError("--deep checks the bundle's layers offline; it does not go with --registry") }
            try await checkRegistry(registry, bundle: bundle, verifier: verifier)
            return
        }
        let report = await verifier.verify(deep: deep)
        if common.json {
            try printJSON(report)
        } else {
            for problem in report.problems { print("problem: \(problem.message)") }
            let summary = "\(report.files) file(s), \(report.layouts) layouts, \(report.references) references, \(report.blobs) blobs, \(formatBytes(report.bytesHashed)) read and hashed in \(String(format: "%.1f", report.seconds - (report.deep?.seconds ?? 0))) s (\(formatBytes(Int64(report.bytesPerSecond)))/s)"
            var line = summary
            if let deep = report.deep {
                line += "; --deep: \(deep.layers) layers decompressed and checked against their diff_ids"
                    + " (\(formatBytes(deep.compressedBytes)) -> \(formatBytes(deep.uncompressedBytes)) in \(String(format: "%.1f", deep.seconds)) s)"
                    + (deep.skipped > 0 ? ", \(deep.skipped) non-image layers skipped" : "")
            }
            print(report.ok ? "bundle OK: \(line)" : "bundle has \(report.problems.count) problem(s): \(line)")
        }
        if !report.ok { throw ExitCode(1) }
    }

    private func checkRegistry(_ text: String, bundle: BundleIndex, verifier: BundleVerifier) async throws {
        let target = try parseReference(text, what: "--registry")
        guard target.tag == nil, target.digest == nil else {
            throw UsageError("--registry \(text) names an image; give HOST[:PORT]/PATH")
        }
        let configuration = try registryOptions.configuration(host: target.host, common: common)
        let client = try RegistryClient(host: target.host, configuration: configuration)
        do {
            let pusher = BundlePusher(client: client, bundle: bundle, target: target, modulesPathSuffix: registryOptions.modulesPathSuffix,
                                      jobs: common.jobs, progress: TransferProgress())
            let checker = RegistryCompleteness(client: client, pusher: pusher, verifier: verifier, jobs: common.jobs)
            let report = try await checker.check()
            await client.shutdown()
            if common.json { try printJSON(report) } else { print(report.text) }
            if !report.failures.isEmpty { throw ExitCode(1) }
        } catch {
            await client.shutdown()
            throw error
        }
    }
}
