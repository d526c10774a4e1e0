import ArgumentParser
import Cluster
import DKP
import Foundation
import OCI
import Registry

/// `--cluster` of push and verify: the target, its read-write user and its CA from the cluster.
struct ClusterTargetOptions: ParsableArguments {
    @Flag(help: "Take the target (registry.<PUBLIC_DOMAIN>/system/deckhouse from ModuleConfig global), the read-write user (secret d8-system/registry-user-rw) and the CA of the registry Ingress's certificate from the cluster (--kubeconfig).")
    var cluster = false

    // Connect to this HOST:PORT instead of registry.<PUBLIC_DOMAIN> (tests; a port-forward).
    // Everything else still comes from the cluster.
    @Option(name: .customLong("cluster-registry-address"), help: .hidden)
    var registryAddress: String?
}

/// The target found in the cluster, ready to use; `cleanup()` removes the CA file written for it.
struct ClusterTarget {
    var reference: Reference
    var configuration: RegistryConfiguration
    var caFile: String?

    func cleanup() {
        if let caFile { try? FileManager.default.removeItem(atPath: caFile) }
    }

    /// Refuses what `--cluster` replaces: a TARGET and explicit credentials (exit 2).
    static func checkUsage(_ options: TargetRegistryOptions, target: String?, command: String) throws {
        if let target {
            throw UsageError("\(command) --cluster takes the target from the cluster (registry.<PUBLIC_DOMAIN>/system/deckhouse): drop \(target), or drop --cluster")
        }
        if options.login != nil || options.password != nil || options.registryPasswordStdin {
            throw UsageError("\(command) --cluster uses the read-write user of secret d8-system/registry-user-rw: drop --registry-login, --registry-password and --registry-password-stdin, or drop --cluster")
        }
        if options.transport.insecure {
            throw UsageError("\(command) --cluster reaches the registry through its Ingress over HTTPS: drop --insecure")
        }
    }

    /// Reads the cluster through `kubeconfig` and says on stderr what it found (never the password).
    static func resolve(kubeconfig: String?, context: String? = nil, options: ClusterTargetOptions,
                        registryOptions: TargetRegistryOptions, common: CommonOptions) async throws -> ClusterTarget {
        let network = common.network
        let config: Kubeconfig
        do {
            config = try await Kubeconfig.load(path: kubeconfig, context: context).resolvingCredentials()
        } catch let error as ClusterError where error.isUsageError {
            throw UsageError(error.description)
        }
        let registry = try await KubeClient.with(kubeconfig: config, proxies: network.proxies, trustRoots: network.trustRoots) {
            try await ClusterRegistry.read($0)
        }
        let host = options.registryAddress ?? registry.host
        let reference = try parseReference("\(host)/\(registry.repository)", what: "the cluster's registry")
        let trust = registry.caPEM != nil ? registry.caSource
            : "\(registry.caSource); trusting the system's CAs" + (registryOptions.transport.caFile != nil ? " and --ca-file" : "")
        writeErr("cluster: target \(registry.target) (ModuleConfig global's publicDomainTemplate), user \(registry.credential.username) "
                 + "(secret d8-system/registry-user-rw), CA: \(trust)\n")
        if options.registryAddress != nil { writeErr("cluster: connecting to \(host) instead (--cluster-registry-address)\n") }

        var configuration = registryOptions.transport.configuration(common: common, credential: registry.credential)
        // A 401's hint then points at the secret, not at options --cluster refuses.
        configuration.optionNames.login = "keys name"
        configuration.optionNames.password = "password of secret d8-system/registry-user-rw (the registry module keeps them in step with the registry: is the switch to Local done far enough for the registry to run?)"
        var caFile: String?
        if let ca = registry.caPEM {
            // The Ingress's CA, with --ca-file's bundle when both are given.
            var bundle = Data(ca)
            if let given = registryOptions.transport.caFile {
                guard let extra = FileManager.default.contents(atPath: given) else { throw UsageError("--ca-file \(given) cannot be read") }
                bundle = extra + Data("\n".utf8) + bundle
            }
            let path = NSTemporaryDirectory() + "dkp-mirror-cluster-ca-\(UUID().uuidString).pem"
            guard FileManager.default.createFile(atPath: path, contents: bundle) else {
                throw UsageError("cannot write the cluster registry's CA to \(path): check the temporary directory (TMPDIR)")
            }
            caFile = path
            configuration.caFile = path
        }
        return ClusterTarget(reference: reference, configuration: configuration, caFile: caFile)
    }
}
