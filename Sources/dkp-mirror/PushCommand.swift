import ArgumentParser
import Bundle
import Foundation
import Mirror
import OCI
import Registry

struct PushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Push a bundle into a registry, e.g. registry.<PUBLIC_DOMAIN>/system/deckhouse, straight from the tars.",
        discussion: """
            Reads bundles written by dkp-mirror and by d8 (chunked or not, older layouts too) without \
            unpacking them. Blobs are hashed as they leave the tar; a corrupt one is never pushed, its \
            images are reported and the rest of the bundle still goes up (exit code 1).
            """)

    @Argument(help: "The bundle directory.")
    var bundleDirectory: String

    @Argument(help: "HOST[:PORT]/PATH, e.g. registry.example.com/system/deckhouse")
    var target: String

    @Flag(help: "Print what would be uploaded and what exists already; upload nothing.")
    var dryRun = false

    @OptionGroup(title: "Registry") var registryOptions: TargetRegistryOptions

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let reference = try parseReference(target, what: "TARGET")
        guard reference.tag == nil, reference.digest == nil else {
            throw UsageError("TARGET \(target) names an image; give HOST[:PORT]/PATH, e.g. registry.example.com/system/deckhouse")
        }
        let bundle = try openBundle(bundleDirectory)

        let configuration = try registryOptions.configuration(host: reference.host, common: common)

        let client = try RegistryClient(host: reference.host, configuration: configuration)
        let renderer = ProgressRenderer.start(dryRun ? .none : common.progress)
        do {
            let pusher = BundlePusher(client: client, bundle: bundle, target: reference, modulesPathSuffix: registryOptions.modulesPathSuffix,
                                      jobs: common.jobs, progress: renderer.progress)
            let plan = try pusher.plan()
            // Refuse early, before any byte moves, when the user may not push (leaves nothing behind).
            try await client.checkPushAccess(repository: reference.repository)
            if dryRun {
                renderer.finish(success: false)
                try await printDryRun(plan, pusher: pusher, client: client)
                await client.shutdown()
                return
            }
            writeErr("pushing \(plan.referenceCount) references, \(plan.blobCount) blobs (\(formatBytes(plan.blobBytes))) into \(plan.repositories.count) repositories of \(reference)\n")
            let result = try await pusher.push(plan)
            renderer.finish(success: result.failures.isEmpty)
            await client.shutdown()
            if common.json {
                try printJSON(result)
            } else {
                writeErr("pushed \(result.references) references: \(result.blobsUploaded) blobs uploaded (\(formatBytes(result.bytesUploaded))), \(result.blobsMounted) mounted, \(result.blobsPresent) already there, in \(String(format: "%.1f", result.seconds)) s (\(formatBytes(Int64(result.bytesPerSecond)))/s), peak memory \(formatBytes(result.peakResidentBytes))\n")
            }
            if !result.failures.isEmpty {
                for failure in result.failures.prefix(20) { writeErr("error: \(failure)\n") }
                if result.failures.count > 20 { writeErr("...and \(result.failures.count - 20) more\n") }
                throw ExitCode(1)
            }
        } catch {
            renderer.finish(success: false)
            await client.shutdown()
            throw error
        }
    }

    private func printDryRun(_ plan: PushPlan, pusher: BundlePusher, client: RegistryClient) async throws {
        let (present, presentBytes) = try await pusher.present(plan)
        struct Output: Encodable {
            var repositories: [String]; var references: Int; var blobs: Int; var bytes: Int64
            var blobsPresent: Int; var bytesPresent: Int64; var problems: [String]
        }
        let output = Output(repositories: plan.repositories, references: plan.referenceCount, blobs: plan.blobCount,
                            bytes: plan.blobBytes, blobsPresent: present, bytesPresent: presentBytes, problems: plan.problems)
        if common.json {
            try printJSON(output)
        } else {
            for repository in output.repositories { print("repository \(client.host)/\(repository)") }
            print("plan: \(output.references) references, \(output.blobs) blobs (\(formatBytes(output.bytes))); already there: \(present) blobs (\(formatBytes(presentBytes))); to upload: \(formatBytes(output.bytes - presentBytes))")
            for problem in plan.problems { print("problem: \(problem)") }
        }
    }
}
