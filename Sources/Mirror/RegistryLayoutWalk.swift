import BoundedPool
import Bundle
import DKP
import Foundation
import OCI
import Registry
import Synchronization
import Version

extension RegistryInventory {
    /// Repositories at fixed paths below TARGET (dkp-source-and-bundle.md §1, §2).
    static let fixedPaths = [
        "", "install", "install-standalone", "release-channel", "installer",
        "security/trivy-db", "security/trivy-bdu", "security/trivy-java-db", "security/trivy-checks",
        "deckhouse-cli/plugins",
    ]

    /// The repositories a DKP push leaves, found without `_catalog`: the fixed ones; every module
    /// the `modules` repository has a tag for, with its `release` repository and the `extra/<x>`
    /// repositories its versions' `extra_images.json` name; packages alike (`version`); every
    /// plugin the `deckhouse-cli/plugins` repository has a tag for. Paths as the registry names
    /// them (with the path suffixes). Repositories that do not exist are dropped later.
    func layoutWalk() async throws -> [String] {
        var paths = Self.fixedPaths
        for (catalog, channel) in [(suffixPath(modulesPathSuffix), "release"), (suffixPath(packagesPathSuffix), "version")] {
            // With an empty suffix the items sit at TARGET itself, among the platform's tags: not walked.
            guard !catalog.isEmpty else { continue }
            paths.append(catalog)
            let names = try await tagsIfAny(catalog)
            let found = Mutex<[String]>([])
            try await forEachConcurrently(names, limit: jobs) { name in
                let main = "\(catalog)/\(name)"
                let extras = try await extraImages(main)
                found.withLock { $0 += [main, "\(main)/\(channel)"] + extras.map { "\(main)/extra/\($0)" } }
            }
            paths += found.withLock { $0 }
        }
        paths += try await tagsIfAny("deckhouse-cli/plugins").map { "deckhouse-cli/plugins/\($0)" }
        return Array(Set(paths))
    }

    /// The names the `extra_images.json` of each version image (tag `vX.Y.Z`, `vX.Y.Z-PRE`) of `main` lists.
    private func extraImages(_ main: String) async throws -> Set<String> {
        let repository = registryRepository(main)
        var names = Set<String>()
        for tag in try await tagsIfAny(main) where Version(releaseTag: tag) != nil {
            let files: [String: [UInt8]]
            do {
                files = try await ImageFiles.read(["extra_images.json"], client: client, repository: repository, reference: tag)
            } catch RegistryError.notFound {
                continue
            }
            guard let listed = try? ExtraImages.tags(files["extra_images.json"], of: "\(repository):\(tag)") else { continue }
            names.formUnion(listed.tags.map(\.name).filter { Reference.problem(repository: $0) == nil })
        }
        return names
    }

    /// A repository's tags, none when it does not exist.
    private func tagsIfAny(_ path: String) async throws -> [String] {
        do {
            return try await client.tags(repository: registryRepository(path))
        } catch RegistryError.notFound {
            return []
        }
    }

    /// `/modules` -> `modules`; "" for a suffix of slashes only.
    func suffixPath(_ suffix: String) -> String {
        LayoutRepositories.path(ofSuffix: suffix)
    }

    /// The bundle layout path of a registry path below TARGET: the inverse of push's mapping.
    func layoutPath(forRegistryPath path: String) -> String {
        LayoutRepositories(root: target.repository, modulesPathSuffix: modulesPathSuffix, packagesPathSuffix: packagesPathSuffix)
            .layoutPath(forRegistryPath: path)
    }
}
