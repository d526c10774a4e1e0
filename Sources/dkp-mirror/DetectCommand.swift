import ArgumentParser
import Cluster
import DKP
import Foundation
import Logging

/// `dkp-mirror detect`: the Deckhouse version and edition of a running cluster (cli.md).
struct DetectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect",
        abstract: "Print the Deckhouse version (tag) and edition of a running cluster.",
        discussion: """
            Reads deployment d8-system/deckhouse through the cluster's API server: the tag of its \
            deckhouse container image, and the edition from /deckhouse/edition of that image (read \
            through the registry the cluster uses), else from the official registry path \
            /deckhouse/<edition>, else from ModuleConfig deckhouse. Prints TAG=<tag> and \
            EDITION=<edition> lines, or JSON with --json.
            """)

    @Option(help: ArgumentHelp("Kubeconfig file (default: the files of $KUBECONFIG, merged as kubectl merges them, else ~/.kube/config).", valueName: "PATH"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("Kubeconfig context to use (default: its current-context).", valueName: "NAME"))
    var context: String?

    @Flag(help: "Print a machine-readable result on stdout.")
    var json = false

    @Flag(name: [.short, .long], help: "More log lines (never secrets).")
    var verbose = false

    @OptionGroup var network: NetworkOptions

    func run() async throws {
        var logger = Logger(label: "dkp-mirror")
        logger.logLevel = verbose ? .debug : .notice
        var options = ClusterDetector.Options()
        options.logger = logger
        options.proxies = network.proxies
        options.trustRoots = network.trustRoots
        let info: ClusterInfo
        do {
            let config = try await Kubeconfig.load(path: kubeconfig, context: context).resolvingCredentials()
            logger.debug("using \(config)")
            info = try await ClusterDetector.detect(kubeconfig: config, options: options)
        } catch let error as ClusterError where error.isUsageError {
            // A missing or malformed kubeconfig is bad input: exit 2.
            throw UsageError(error.description)
        }
        if json {
            try printJSON(info)
        } else {
            FileHandle.standardOutput.write(Data(info.shellLines.utf8))
        }
        if verbose {
            writeErr("edition from \(info.editionSource); image \(info.image); registry \(info.registry)\n")
        }
    }
}
