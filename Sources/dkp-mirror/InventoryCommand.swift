import ArgumentParser
import Bundle
import Foundation
import Mirror
import OCI
import Registry

struct InventoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory",
        abstract: "List every manifest and blob a registry (or a bundle) holds, into an inventory file for pull --against.",
        usage: "dkp-mirror inventory (--registry TARGET | --bundle DIR) -o FILE [options]\n       dkp-mirror inventory --check FILE",
        discussion: """
            --registry TARGET (HOST[:PORT]/PATH, as push takes it, with push's credential and TLS \
            options): finds the repositories below TARGET by _catalog, or, where the registry refuses \
            it, by walking the DKP layout (root, install, install-standalone, release-channel, \
            installer, security/*, modules and packages from their discovery tags with their release/version \
            and extra/* repositories, plugins); reads every tag's manifest and every index's children \
            with -j requests at once; image manifests give their config and layers as blobs. \
            --bundle DIR: the same from a bundle on disk (every entry of every layout). \
            Each item is written with one repository that holds it, as a bundle layout path. \
            The file is a line format, version 1 (README, "Inventory files"); its last line is the \
            SHA-256 of the bytes before it, and it is written atomically. \
            --check FILE reads a file, checks it and prints its summary (exit 2 when it is damaged).
            """)

    @Option(help: ArgumentHelp("Take the inventory of this registry path (HOST[:PORT]/PATH), as push's TARGET.", valueName: "TARGET"))
    var registry: String?

    @Option(help: ArgumentHelp("Take the inventory of this bundle directory.", valueName: "DIR"))
    var bundle: String?

    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Write the inventory here (atomically).", valueName: "FILE"))
    var output: String?

    @Option(help: ArgumentHelp("Read this inventory file, check it and print its summary.", valueName: "FILE"))
    var check: String?

    @OptionGroup(title: "Registry") var registryOptions: TargetRegistryOptions
    @OptionGroup var common: CommonOptions

    /// What `--json` prints.
    struct Summary: Encodable {
        var file: String
        var source: String
        var created: String
        var walk: String?
        var repositories: Int
        var manifests: Int
        var blobs: Int
        var blobBytes: Int64
        var warnings: [String]?
    }

    func run() async throws {
        if let check {
            guard registry == nil, bundle == nil, output == nil else {
                throw UsageError("--check FILE reads an inventory; it does not go with --registry, --bundle or -o")
            }
            let inventory = try Inventory(contentsOf: check)
            try report(summary(inventory, file: check))
            return
        }
        guard (registry == nil) != (bundle == nil) else {
            throw UsageError("give exactly one of --registry TARGET (HOST[:PORT]/PATH) and --bundle DIR, and -o FILE")
        }
        guard let output else { throw UsageError("give -o FILE: where to write the inventory") }
        try Self.checkWritable(output)
        let result: Summary
        if let registry {
            result = try await fromRegistry(registry, output: output)
        } else {
            result = try fromBundle(bundle ?? ".", output: output)
        }
        try report(result)
    }

    private func fromRegistry(_ text: String, output: String) async throws -> Summary {
        let target = try parseTarget(text, what: "--registry", insecure: registryOptions.transport.insecure)
        guard target.tag == nil, target.digest == nil else {
            throw UsageError("--registry \(text) names an image; give HOST[:PORT]/PATH, e.g. registry.example.com/system/deckhouse")
        }
        let configuration = try registryOptions.configuration(host: target.host, common: common)
        let client = try RegistryClient(host: target.host, configuration: configuration)
        let quiet = common.progress == .none || common.progress == .json
        var walker = RegistryInventory(client: client, target: target, modulesPathSuffix: registryOptions.modulesPathSuffix,
                                       packagesPathSuffix: registryOptions.packagesPathSuffix, jobs: common.jobs,
                                       progress: { line in if !quiet { writeErr("inventory: \(line)\n") } })
        walker.forceLayoutWalk = ProcessInfo.processInfo.environment["DKP_MIRROR_INVENTORY_WALK"] == "layout"
        let result: RegistryInventory.Result
        do {
            result = try await walker.run()
            await client.shutdown()
        } catch {
            await client.shutdown()
            throw error
        }
        for warning in result.warnings { writeErr("warning: \(warning)\n") }
        if result.inventory.manifests.isEmpty {
            // Safe (a bundle made against it ships everything) but most likely a wrong path.
            writeErr("warning: \(target.name) holds no images: is the path right (as given to push)?\n")
        }
        try result.inventory.write(to: output)
        // The repositories that hold images, as the file lists them (and `--check` counts them);
        // an empty one the walk visited is not one.
        var summary = summary(result.inventory, file: output)
        summary.walk = result.walk.rawValue
        summary.warnings = result.warnings
        return summary
    }

    private func fromBundle(_ directory: String, output: String) throws -> Summary {
        let path = URL(fileURLWithPath: (directory as NSString).standardizingPath).standardizedFileURL.path
        let index = try openBundle(path)
        let inventory: Inventory
        do {
            inventory = try Inventory(bundle: index, directory: path)
        } catch let error as BundleError where error.isBadInput {
            throw UsageError("\(error)")
        }
        try inventory.write(to: output)
        return summary(inventory, file: output)
    }

    private func summary(_ inventory: Inventory, file: String) -> Summary {
        Summary(file: file, source: inventory.source.description, created: ISO8601DateFormatter().string(from: inventory.created),
                repositories: inventory.repositories.count, manifests: inventory.manifests.count,
                blobs: inventory.blobs.count, blobBytes: inventory.totalBlobBytes)
    }

    private func report(_ summary: Summary) throws {
        if common.json { try printJSON(summary) }
        let walk = summary.walk.map { $0 == "catalog" ? " (found by _catalog)" : " (found by walking the DKP layout)" } ?? ""
        writeErr("inventory \(summary.file): \(summary.source), created \(summary.created): \(summary.repositories) repositories\(walk), "
            + "\(summary.manifests) manifests, \(summary.blobs) blobs (\(formatBytes(summary.blobBytes)))\n")
    }

    /// The output's directory must exist and the output must not be a directory: said before any request.
    static func checkWritable(_ output: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory), isDirectory.boolValue {
            throw UsageError("-o \(output) is a directory; give a file name, e.g. \(output)/site.inventory")
        }
        let parent = (output as NSString).deletingLastPathComponent
        let directory = parent.isEmpty ? "." : parent
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw UsageError("-o \(output): the directory \(directory) does not exist; create it or give another path")
        }
        guard FileManager.default.isWritableFile(atPath: directory) else {
            throw UsageError("-o \(output): the directory \(directory) is not writable; give another path")
        }
    }
}
