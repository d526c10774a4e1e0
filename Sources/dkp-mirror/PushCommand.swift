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
        usage: "dkp-mirror push [BUNDLE_DIR] TARGET [--file F ...] [options]\n       dkp-mirror push [BUNDLE_DIR] --cluster [--kubeconfig PATH] [--file F ...] [options]",
        discussion: """
            Reads bundles written by dkp-mirror and by d8 (chunked or not, older layouts too) without \
            unpacking them. Each layout goes to TARGET/<path> (modules and packages under their path \
            suffixes), each image under its io.deckhouse.image.short_tag; then the discovery tags \
            TARGET/modules:<m>, TARGET/packages:<p>, TARGET/deckhouse-cli/plugins:<n>. A descriptor \
            without a short tag is pushed under the tag of its ref name, else skipped, with a warning \
            (d8 skips it and says nothing); a tag two descriptors give different digests: a warning naming \
            both, the last wins (tars in name order), as in d8 (which says nothing). Layouts several tars hold (package-versions.tar and \
            package-<p>.tar) are united. Blobs are hashed as they leave the tar; a corrupt one is never \
            pushed, its images are reported and the rest of the bundle still goes up (exit code 1). \
            Before anything moves, write access is checked by opening an upload session and cancelling \
            it: nothing is left behind (d8 pushes a d8WriteCheck tag and leaves it); with \
            MIRROR_BYPASS_ACCESS_CHECKS=1 a failed check is a warning and the push goes on. A summary \
            (platform versions, modules, packages, plugins, security databases, VEX attestations, \
            blobs, bytes, time) ends on stderr; --json puts the same on stdout. With --cluster the \
            target, the read-write user and the CA come from the cluster (--kubeconfig): \
            registry.<PUBLIC_DOMAIN>/system/deckhouse from ModuleConfig global's publicDomainTemplate, \
            secret d8-system/registry-user-rw, ca.crt of the TLS secret of the Ingress serving that host \
            (else the system's trust and --ca-file); the password is never printed.
            """)

    @Argument(help: ArgumentHelp("[BUNDLE_DIR] TARGET: the bundle directory (optional with --file), then HOST[:PORT]/PATH, e.g. registry.example.com/system/deckhouse.",
                                 valueName: "BUNDLE_DIR TARGET"))
    var positionals: [String] = []

    @Option(name: .customLong("file"), help: ArgumentHelp("Push this tar, or this tar's chunk set (NAME.tar.NNNN.chunk, or NAME.tar when only chunks exist); repeatable, adds to BUNDLE_DIR.", valueName: "F"))
    var files: [String] = []

    @Flag(help: "Print what would be uploaded and what exists already; upload nothing.")
    var dryRun = false

    @OptionGroup var upload: UploadOptions

    @Option(help: ArgumentHelp("Accepted for d8 compatibility and unused: dkp-mirror reads every blob straight from the tars and unpacks nothing.", valueName: "DIR"))
    var tmpDir: String?

    @OptionGroup(title: "Registry") var registryOptions: TargetRegistryOptions

    @OptionGroup(title: "Cluster") var clusterOptions: ClusterTargetOptions

    @Option(help: ArgumentHelp("With --cluster: the kubeconfig file (default: the files of $KUBECONFIG, merged as kubectl merges them, else ~/.kube/config).", valueName: "PATH"))
    var kubeconfig: String?

    @OptionGroup var common: CommonOptions

    /// BUNDLE_DIR (nil with --file alone), TARGET (nil with --cluster), and the tars given one by one.
    func arguments() throws -> (directory: String?, target: String?, files: [String]) {
        if clusterOptions.cluster {
            try ClusterTarget.checkUsage(registryOptions, target: positionals.count > 1 ? positionals[1] : nil, command: "push")
            guard let first = positionals.first else {
                guard !files.isEmpty else { throw UsageError("push --cluster needs the bundle: push BUNDLE_DIR --cluster, or push --cluster --file F") }
                return (nil, nil, files)
            }
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: first, isDirectory: &isDirectory)
            return exists && !isDirectory.boolValue ? (nil, nil, [first] + files) : (first, nil, files)
        }
        if kubeconfig != nil || clusterOptions.registryAddress != nil {
            throw UsageError("--kubeconfig and --cluster-registry-address go with --cluster")
        }
        switch positionals.count {
        case 2:
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: positionals[0], isDirectory: &isDirectory)
            // A tar given in BUNDLE_DIR's place is pushed as d8 pushes one: as if by --file.
            if exists, !isDirectory.boolValue { return (nil, positionals[1], [positionals[0]] + files) }
            return (positionals[0], positionals[1], files)
        case 1:
            guard !files.isEmpty else {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: positionals[0], isDirectory: &isDirectory), isDirectory.boolValue {
                    throw UsageError("push got one argument, the directory \(positionals[0]), and no TARGET; give the target after it: "
                        + "push \(positionals[0]) registry.example.com/system/deckhouse (or --cluster to take it from the cluster)")
                }
                throw UsageError("push got one argument, TARGET \(positionals[0]); give the bundle directory before it "
                    + "(push BUNDLE_DIR TARGET), or the tars to push with --file F")
            }
            return (nil, positionals[0], files)
        case 0:
            throw UsageError("push needs TARGET (HOST[:PORT]/PATH) and a bundle: push BUNDLE_DIR TARGET, or push TARGET --file F")
        default:
            throw UsageError("push takes at most two arguments, [BUNDLE_DIR] TARGET; got \(positionals.count): "
                + "give more tars with --file F")
        }
    }

    func run() async throws {
        let (directory, targetText, files) = try arguments()
        var cleanup: ClusterTarget?
        if let targetText {
            let reference = try parseTarget(targetText, what: "TARGET", insecure: registryOptions.transport.insecure)
            guard reference.tag == nil, reference.digest == nil else {
                throw UsageError("TARGET \(targetText) names an image; give HOST[:PORT]/PATH, e.g. registry.example.com/system/deckhouse")
            }
        }
        for file in files where BundleIndex.tarName(forFile: (file as NSString).lastPathComponent) == nil {
            throw UsageError("--file \(file) is not a bundle tar: give NAME.tar or one of its chunk files NAME.tar.NNNN.chunk")
        }
        let bundle = try openBundle(directory, files: files)
        // A tar lost on the way to the closed site would leave its images out of a push that
        // otherwise succeeds: what the bundle's own lists name must be there.
        if let directory, let (missing, list) = Checksums.listedButMissing(in: (directory as NSString).standardizingPath) {
            let shown = missing.prefix(5).joined(separator: ", ") + (missing.count > 5 ? ", ... (\(missing.count) in all)" : "")
            throw UsageError("\(directory) lacks \(shown), which \(list) list\(list == "SHA256SUMS" ? "s" : ""): the bundle is incomplete; "
                             + "copy the missing files again (dkp-mirror verify \(directory) checks the copy), or push only the tars you mean with --file")
        }
        // A differential bundle (pull --against): its list of left-out blobs; damaged is exit code 2.
        // With --file alone, the folder of the tars when they share one.
        let folders = Set(files.map { (($0 as NSString).standardizingPath as NSString).deletingLastPathComponent })
        let bundleFolder = directory ?? (folders.count == 1 ? folders.first.map { $0.isEmpty ? "." : $0 } : nil)
        let leftOut = try bundleFolder.flatMap { try DifferentialBundle.leftOut(inBundle: ($0 as NSString).standardizingPath) }

        let reference: Reference
        let configuration: RegistryConfiguration
        if let targetText {
            reference = try parseTarget(targetText, what: "TARGET", insecure: registryOptions.transport.insecure)
            configuration = try registryOptions.configuration(host: reference.host, common: common)
        } else {
            let found = try await ClusterTarget.resolve(kubeconfig: kubeconfig, options: clusterOptions,
                                                        registryOptions: registryOptions, common: common)
            reference = found.reference
            configuration = found.configuration
            cleanup = found
        }
        defer { cleanup?.cleanup() }
        try await push(reference: reference, configuration: configuration, bundle: bundle, leftOut: leftOut)
    }

    private func push(reference: Reference, configuration: RegistryConfiguration, bundle: BundleIndex,
                      leftOut: Inventory?) async throws {
        var configuration = configuration
        upload.apply(to: &configuration)
        let client = try RegistryClient(host: reference.host, configuration: configuration)
        let renderer = ProgressRenderer.start(dryRun ? .none : common.progress)
        do {
            var pusher = BundlePusher(client: client, bundle: bundle, target: reference, modulesPathSuffix: registryOptions.modulesPathSuffix,
                                      packagesPathSuffix: registryOptions.packagesPathSuffix, jobs: common.jobs, progress: renderer.progress)
            pusher.leftOut = leftOut
            let plan = try pusher.plan()
            // Refuse early, before any byte moves, when the user may not push (leaves nothing behind).
            try await checkAccess(client, repository: reference.repository)
            printWarnings(plan.warnings)
            for (kind, suffix, flag, carried) in [("modules", registryOptions.modulesPathSuffix, "--modules-path-suffix", !plan.summary.modules.isEmpty),
                                                  ("packages", registryOptions.packagesPathSuffix, "--packages-path-suffix", !plan.summary.packages.isEmpty)] {
                let path = LayoutRepositories.path(ofSuffix: suffix)
                guard path != kind, carried else { continue }
                writeErr("note: \(kind) go to \(reference.host)/\([reference.repository, path].filter { !$0.isEmpty }.joined(separator: "/")), "
                         + "not to \(reference.host)/\(reference.repository)/\(kind), where a cluster looks for them (\(flag))\n")
            }
            if dryRun {
                renderer.finish(success: false)
                try await printDryRun(plan, pusher: pusher, client: client)
                await client.shutdown()
                return
            }
            // Known before the first upload: the operator sees at once what will be held back.
            for problem in plan.problems { writeErr("warning: held back: \(problem)\n") }
            if let leftOut {
                writeErr("differential bundle: \(leftOut.blobs.count) blobs (\(formatBytes(leftOut.totalBlobBytes))) left out of it; "
                         + "checking that \(reference) holds them before anything is pushed\n")
            }
            writeErr("pushing \(plan.referenceCount) references, \(plan.blobCount) blobs (\(formatBytes(plan.blobBytes))) into \(plan.repositories.count) repositories of \(reference)\n")
            let result = try await pusher.push(plan)
            renderer.finish(success: result.failures.isEmpty)
            await client.shutdown()
            for line in result.damagedCopies { writeErr("warning: \(line)\n") }
            writeErr(PushSummaryText.lines(result))
            if common.json { try printJSON(result) }
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

    /// The write check; with MIRROR_BYPASS_ACCESS_CHECKS=1 (d8's variable) a failure is a warning.
    private func checkAccess(_ client: RegistryClient, repository: String) async throws {
        do {
            try await client.checkPushAccess(repository: repository)
        } catch {
            guard !Task.isCancelled, !(error is CancellationError), Self.bypassAccessChecks else { throw error }
            writeErr("warning: the write check failed (\(error)); MIRROR_BYPASS_ACCESS_CHECKS=1 is set, so the push goes on\n")
        }
    }

    static var bypassAccessChecks: Bool {
        let value = ProcessInfo.processInfo.environment["MIRROR_BYPASS_ACCESS_CHECKS"]?.lowercased() ?? ""
        return value == "1" || value == "true"
    }

    private func printWarnings(_ warnings: [String]) {
        for warning in warnings.prefix(50) { writeErr("warning: \(warning)\n") }
        if warnings.count > 50 { writeErr("warning: ...and \(warnings.count - 50) more (all of them are in the --json result)\n") }
    }

    private func printDryRun(_ plan: PushPlan, pusher: BundlePusher, client: RegistryClient) async throws {
        let (present, presentBytes) = try await pusher.present(plan)
        let leftOut = try await pusher.leftOutStatus(plan)
        struct Output: Encodable {
            var repositories: [String]; var references: Int; var blobs: Int; var bytes: Int64
            var blobsPresent: Int; var bytesPresent: Int64; var problems: [String]; var warnings: [String]
            var summary: PushSummary; var leftOut: LeftOutStatus
        }
        let output = Output(repositories: plan.repositories, references: plan.referenceCount, blobs: plan.blobCount,
                            bytes: plan.blobBytes, blobsPresent: present, bytesPresent: presentBytes, problems: plan.problems,
                            warnings: plan.warnings, summary: plan.summary, leftOut: leftOut)
        if common.json {
            try printJSON(output)
        } else {
            for repository in output.repositories { print("repository \(client.host)/\(repository)") }
            print("plan: \(output.references) references, \(output.blobs) blobs (\(formatBytes(output.bytes))); already there: \(present) blobs (\(formatBytes(presentBytes))); to upload: \(formatBytes(output.bytes - presentBytes))")
            for problem in plan.problems { print("problem: \(problem)") }
            if leftOut.blobs > 0 {
                print("left out of the bundle (differential): \(leftOut.blobs) blobs (\(formatBytes(leftOut.bytes))) the images need; missing in the target: \(leftOut.missing)")
            }
            if let line = leftOut.missingLine { print("problem: \(line)") }
        }
    }
}

/// Opens the bundle of a directory and/or chosen tars; one that cannot be read is bad input (exit 2).
func openBundle(_ directory: String?, files: [String]) throws -> BundleIndex {
    guard !files.isEmpty else { return try openBundle(directory ?? ".") }
    do {
        return try BundleIndex.open(directory: directory.map { ($0 as NSString).standardizingPath },
                                    files: files.map { ($0 as NSString).standardizingPath })
    } catch {
        throw UsageError("\(error)")
    }
}

/// The end-of-push summary, as d8 gives one: what went up, by kind, and what it cost.
enum PushSummaryText {
    static func lines(_ result: PushResult) -> String {
        func list(_ names: [String]) -> String {
            names.isEmpty ? "none" : "\(names.count) (\(names.prefix(10).joined(separator: ", "))\(names.count > 10 ? ", ..." : ""))"
        }
        var text = "push summary for \(result.target):\n"
        text += "  platform versions: \(list(result.platformVersions))\n"
        text += "  modules: \(list(result.modules))\n"
        text += "  packages: \(list(result.packages))\n"
        text += "  plugins: \(list(result.plugins))\n"
        text += "  security databases: \(list(result.securityDatabases))\n"
        text += "  VEX attestations: \(result.vexAttestations)\n"
        text += "  references: \(result.references) in \(result.repositories) repositories"
            + (result.failures.isEmpty ? "" : ", \(result.failures.count) not pushed") + "\n"
        text += "  blobs: \(result.blobsUploaded) uploaded (\(formatBytes(result.bytesUploaded))), \(result.blobsMounted) mounted, "
            + "\(result.blobsPresent) already there\n"
        text += "  manifests already there (not put again): \(result.manifestsPresent)\n"
        if !result.damagedCopies.isEmpty {
            text += "  damaged blob copies in the bundle: \(result.damagedCopies.count) (named above; `verify` checks every copy)\n"
        }
        text += "  elapsed: \(String(format: "%.1f", result.seconds)) s (\(formatBytes(Int64(result.bytesPerSecond)))/s), "
            + "peak memory \(formatBytes(result.peakResidentBytes))"
            + (result.warnings.isEmpty ? "" : ", \(result.warnings.count) warning(s)") + "\n"
        return text
    }
}
