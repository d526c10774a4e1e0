import ArgumentParser
import Foundation
import Mirror
import OCI
import Registry

struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print the manifest digest, media type and size of an image reference.")

    @Argument(help: "HOST[:PORT]/PATH[:TAG][@DIGEST]")
    var reference: String

    @Flag(help: "Print the manifest bytes exactly as served.")
    var raw = false

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let ref = try parseReference(reference, what: "REF")
        let configuration = try connection.configuration(host: ref.host, common: common)
        let manifest = try await RegistryClient.with(host: ref.host, configuration: configuration) { client in
            try await client.manifest(repository: ref.repository, reference: ref.manifestReference)
        }
        if raw {
            FileHandle.standardOutput.write(Data(manifest.bytes))
            return
        }
        struct Output: Encodable {
            var reference: String, digest: String, mediaType: String, size: Int
            var children: [String]?
        }
        var children: [String]?
        if case let .index(index) = manifest.document {
            children = index.manifests.map { d in
                let platform = d.platform.map { " \($0.os)/\($0.architecture)\($0.variant.map { "/\($0)" } ?? "")" } ?? ""
                return "\(d.digest) \(d.mediaType)\(platform)"
            }
        }
        let output = Output(reference: ref.description, digest: manifest.digest.string, mediaType: manifest.mediaType.rawValue,
                            size: manifest.bytes.count, children: children)
        if common.json {
            try printJSON(output)
        } else {
            print("digest: \(output.digest)\nmediaType: \(output.mediaType)\nsize: \(output.size)")
            for child in children ?? [] { print("child: \(child)") }
        }
    }
}

struct TagsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tags",
        abstract: "List a repository's tags (following pagination).")

    @Argument(help: "HOST[:PORT]/PATH")
    var repository: String

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let ref = try parseReference(repository, what: "REPO")
        guard ref.tag == nil, ref.digest == nil else {
            throw UsageError("REPO names a repository, not an image: drop the tag or digest from \(repository)")
        }
        let configuration = try connection.configuration(host: ref.host, common: common)
        let tags = try await RegistryClient.with(host: ref.host, configuration: configuration) { client in
            try await client.tags(repository: ref.repository)
        }
        if common.json {
            try printJSON(tags)
        } else {
            for tag in tags { print(tag) }
        }
    }
}

struct CopyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy an image or index with all its children from one registry to another, streamed, nothing on disk.")

    @Argument(help: "Source HOST[:PORT]/PATH[:TAG][@DIGEST]")
    var source: String

    @Argument(help: "Destination HOST[:PORT]/PATH[:TAG] (the source's tag when none is given)")
    var destination: String

    @Flag(help: "Plain HTTP to both registries (or use --src-insecure / --dest-insecure).")
    var insecure = false
    @Flag(help: "HTTPS without verification for both registries.")
    var tlsSkipVerify = false
    @Option(help: ArgumentHelp("Trust this CA bundle for both registries.", valueName: "PEM"))
    var caFile: String?

    @OptionGroup(title: "Source") var src: SourceOptions
    @OptionGroup(title: "Destination") var dest: DestinationOptions
    @OptionGroup(title: "Destination") var upload: UploadOptions
    @OptionGroup var common: CommonOptions

    func run() async throws {
        if src.passwordStdin && dest.passwordStdin {
            throw UsageError("--src-password-stdin and --dest-password-stdin would both read stdin: pass one of the passwords another way")
        }
        let from = try parseReference(source, what: "SRC")
        let to = try parseReference(destination, what: "DST")

        var sourceConfiguration = RegistryConfiguration()
        sourceConfiguration.insecure = insecure || src.insecure
        sourceConfiguration.tlsSkipVerify = tlsSkipVerify || src.tlsSkipVerify
        sourceConfiguration.caFile = src.caFile ?? caFile
        sourceConfiguration.optionNames = OptionNames(prefix: "src-")
        sourceConfiguration.credential = try resolveCredential(
            host: from.host, login: src.login, password: src.password, passwordStdin: src.passwordStdin,
            names: ("--src-login", "--src-password", "--src-password-stdin"),
            environment: ("D8_MIRROR_SOURCE_LOGIN", "D8_MIRROR_SOURCE_PASSWORD"))

        var destinationConfiguration = RegistryConfiguration()
        destinationConfiguration.insecure = insecure || dest.insecure
        destinationConfiguration.tlsSkipVerify = tlsSkipVerify || dest.tlsSkipVerify
        destinationConfiguration.caFile = dest.caFile ?? caFile
        destinationConfiguration.optionNames = OptionNames(prefix: "dest-")
        destinationConfiguration.credential = try resolveCredential(
            host: to.host, login: dest.login, password: dest.password, passwordStdin: dest.passwordStdin,
            names: ("--dest-login", "--dest-password", "--dest-password-stdin"),
            environment: ("D8_MIRROR_REGISTRY_LOGIN", "D8_MIRROR_REGISTRY_PASSWORD"))

        common.apply(to: &sourceConfiguration)
        common.apply(to: &destinationConfiguration)
        upload.apply(to: &destinationConfiguration)

        let sourceClient = try RegistryClient(host: from.host, configuration: sourceConfiguration)
        let destinationClient: RegistryClient
        do {
            destinationClient = try RegistryClient(host: to.host, configuration: destinationConfiguration)
        } catch {
            await sourceClient.shutdown()
            throw error
        }
        let renderer = ProgressRenderer.start(common.progress)
        let copier = ImageCopier(source: sourceClient, destination: destinationClient, jobs: common.jobs, progress: renderer.progress)
        let result: CopyResult
        do {
            result = try await copier.copy(from: from, to: to)
            renderer.finish()
        } catch {
            renderer.finish(success: false)
            await sourceClient.shutdown()
            await destinationClient.shutdown()
            throw error
        }
        await sourceClient.shutdown()
        await destinationClient.shutdown()
        if common.json {
            try printJSON(result)
        } else {
            writeErr("copied \(result.source) -> \(result.destination): \(result.manifests) manifest(s), \(result.blobs) blob(s) (\(result.blobsSkipped) already there), \(formatBytes(result.bytesTransferred)) in \(String(format: "%.1f", result.seconds)) s (\(formatBytes(Int64(result.bytesPerSecond)))/s), peak memory \(formatBytes(result.peakResidentBytes))\n")
        }
    }
}
