import ArgumentParser
import Foundation
import OCI
import Registry
import Streams
import DevSupport

/// Helpers for the demo and the benchmark; not part of the product.
@main
struct DevTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dkp-dev",
        abstract: "Development helpers: seed synthetic images into a registry, measure the hasher, a WAN in front of a registry, a layer scan's memory.",
        subcommands: [SeedImage.self, SeedEdition.self, HashBench.self, WANProxy.self, LayerScanCommand.self, WriteTestdata.self])
}

struct RegistryAccess: ParsableArguments {
    @Flag(help: "Plain HTTP.") var insecure = false
    @Option(help: "CA bundle (PEM).") var caFile: String?
    @Option(help: "Username.") var login: String?
    @Option(help: "Password (or env DKP_DEV_PASSWORD).") var password: String?

    func client(host: String) throws -> RegistryClient {
        var configuration = RegistryConfiguration()
        configuration.insecure = insecure
        configuration.caFile = caFile
        if let login {
            let password = self.password ?? ProcessInfo.processInfo.environment["DKP_DEV_PASSWORD"] ?? ""
            configuration.credential = Credential(username: login, password: password)
        }
        return try RegistryClient(host: host, configuration: configuration)
    }
}

struct SeedImage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed-image",
        abstract: "Push a synthetic image (or, with --platforms, a multi-arch index) with layers of the given sizes.")

    @Argument(help: "HOST[:PORT]/PATH:TAG") var reference: String
    @Option(help: "Comma-separated layer sizes in bytes (suffixes K, M, G: powers of 1024).") var layers = "1M"
    @Option(help: "Number of platform images under an OCI index (0: a plain image).") var platforms = 0
    @Option(help: "Seed of the synthetic content.") var seed: UInt64 = 1
    @OptionGroup var access: RegistryAccess

    func run() async throws {
        let ref = try Reference(parsing: reference)
        guard let tag = ref.tag else { throw ValidationError("give a tag: HOST/PATH:TAG") }
        let sizes = try layers.split(separator: ",").map { try parseSize(String($0)) }
        let client = try access.client(host: ref.host)
        do {
            let digest: Digest
            if platforms > 0 {
                var images: [SeededImage] = []
                for i in 0..<platforms {
                    images.append(try await ImageSeeder.pushImage(client, repository: ref.repository, tag: "\(tag)-p\(i)",
                                                                  layerSizes: sizes, seed: seed &+ UInt64(i) &* 1000))
                }
                digest = try await ImageSeeder.pushIndex(client, repository: ref.repository, tag: tag, images: images)
            } else {
                digest = try await ImageSeeder.pushImage(client, repository: ref.repository, tag: tag, layerSizes: sizes, seed: seed).manifestDigest
            }
            await client.shutdown()
            print(digest)
        } catch {
            await client.shutdown()
            throw error
        }
    }
}

func parseSize(_ text: String) throws -> Int64 {
    let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
    if let last = trimmed.last, let unit = units[last], let value = Double(trimmed.dropLast()) {
        return Int64(value * Double(unit))
    }
    guard let value = Int64(trimmed) else { throw ValidationError("not a size: \(text)") }
    return value
}

struct HashBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash-bench",
        abstract: "SHA-256 throughput of the Streams hasher over an in-memory buffer (MB/s, decimal).")

    @Option(help: "Bytes to hash in total (suffixes K, M, G).") var total = "4G"
    @Option(help: "Size of each update (suffixes K, M, G).") var chunk = "1M"

    func run() async throws {
        let totalBytes = try parseSize(total)
        let chunkBytes = Int(try parseSize(chunk))
        let buffer = [UInt8](repeating: 0x5a, count: chunkBytes)
        let hasher = SHA256()
        let clock = ContinuousClock()
        var hashed: Int64 = 0
        let elapsed = clock.measure {
            buffer.withUnsafeBytes { bytes in
                while hashed < totalBytes {
                    hasher.update(bytes)
                    hashed += Int64(chunkBytes)
                }
            }
            _ = hasher.finalize()
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(String(format: "%.0f", Double(hashed) / seconds / 1e6))
    }
}

struct SeedEdition: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed-edition",
        abstract: "Seed a synthetic DKP edition (channels, versions, platform images, security DBs, modules, installer).")

    @Argument(help: "Edition root: HOST[:PORT]/deckhouse/ee") var root: String
    @Option(help: "Size of the base layer shared by controller images (suffixes K, M, G).") var baseLayer = "256K"
    @Option(help: "Size of each platform and module image's own layer.") var imageLayer = "32K"
    @Option(help: "Digest-referenced platform images per version.") var platformImages = 4
    @Option(help: "Digest-referenced images per module version.") var moduleImages = 2
    @Option(help: "More digest images every controller lists, sharing one layer (memory at scale).") var cheapPlatformImages = 0
    @OptionGroup var access: RegistryAccess

    func run() async throws {
        let ref = try Reference(parsing: root)
        var options = EditionSeeder.Options()
        options.root = ref.repository
        options.edition = ref.lastPathComponent
        options.baseLayerSize = try parseSize(baseLayer)
        options.imageLayerSize = try parseSize(imageLayer)
        options.platformImagesPerVersion = platformImages
        options.moduleImagesPerVersion = moduleImages
        options.cheapPlatformImages = cheapPlatformImages
        let client = try access.client(host: ref.host)
        do {
            _ = try await EditionSeeder(client: client, options: options).seed()
            await client.shutdown()
            print("seeded \(ref.host)/\(options.root): versions \(options.versions.joined(separator: " ")), modules \(options.modules.keys.sorted().joined(separator: " "))")
        } catch {
            await client.shutdown()
            throw error
        }
    }
}

struct WriteTestdata: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write-testdata",
        abstract: "Write the generated fixtures of testdata/: the small bundles of every generation and the hostile tars.")

    @Argument(help: "The testdata folder (default: testdata).") var directory = "testdata"

    func run() async throws {
        try TestdataBundles.write(to: directory + "/bundles")
        try TestdataHostileTars.write(to: directory + "/hostile")
        print("wrote \(directory)/bundles (\(TestdataBundles.Generation.allCases.count) generations) and \(directory)/hostile (\(TestdataHostileTars.all().count) tars)")
    }
}
