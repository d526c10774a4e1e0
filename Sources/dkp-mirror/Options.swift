import ArgumentParser
import Bundle
import Foundation
import Logging
import Network
import NIOSSL
import Registry

enum ProgressMode: String, ExpressibleByArgument, CaseIterable {
    case auto, bar, plain, json, none
}

/// Options every command has (cli.md, "Common options").
struct CommonOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "How much runs at once: blob transfers (pull, push, copy), hashing (verify), HEADs (verify --registry: 3, as the cluster checks, unless given).")
    var jobs: Int = 8

    @Flag(help: "Print a machine-readable result on stdout.")
    var json = false

    @Option(help: "Progress on stderr: auto (bar on a terminal, plain lines otherwise), bar, plain, json (events on stdout), none.")
    var progress: ProgressMode = .auto

    @Flag(name: [.short, .long], help: "More log lines (never secrets); MIRROR_DEBUG_LOG=1..4, as d8 takes it, does the same.")
    var verbose = false

    @Option(name: .customLong("timeout"), help: ArgumentHelp("How long a transfer may stay silent (nothing received or sent) before it is abandoned and retried: seconds or a Go duration (90s, 4h); env D8_MIRROR_TIMEOUT; default 60 s. An inactivity timeout, never a deadline on a whole transfer (d8 applies it to whole requests, which cuts multi-GB layers).", valueName: "DURATION"))
    var timeoutText: String?

    /// Seconds: `--timeout`, else `D8_MIRROR_TIMEOUT`, else 60.
    var timeout: Int {
        (timeoutText ?? ProcessInfo.processInfo.environment["D8_MIRROR_TIMEOUT"]).flatMap(Self.seconds(ofDuration:)) ?? 60
    }

    /// Seconds of `120`, or of a Go duration such as `90s`, `1h30m`, `500ms` (rounded up to whole seconds).
    static func seconds(ofDuration text: String) -> Int? {
        if let whole = Int(text) { return whole }
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        var rest = Substring(text), total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let unit = units.first(where: { rest.hasPrefix($0.0) && !(($0.0 == "m") && rest.hasPrefix("ms")) }) else { return nil }
            total += value * unit.1
            rest = rest.dropFirst(unit.0.count)
        }
        return total > 0 ? Int(total.rounded(.up)) : nil
    }

    @Option(help: "Attempts per request for errors that may pass (connection lost, timeout, 408, 429, 5xx), counting the first.")
    var retries: Int = 6

    @OptionGroup var network: NetworkOptions

    func validate() throws {
        guard (1...256).contains(jobs) else { throw ValidationError("--jobs must be between 1 and 256, got \(jobs)") }
        for (name, text) in [("--timeout", timeoutText), ("D8_MIRROR_TIMEOUT", ProcessInfo.processInfo.environment["D8_MIRROR_TIMEOUT"])] {
            guard let text else { continue }
            guard let seconds = Self.seconds(ofDuration: text), (1...86_400).contains(seconds) else {
                throw ValidationError("\(name) must be seconds or a duration such as 90s or 4h, between 1 s and 24h, got '\(text)'")
            }
            if name == "--timeout" { break }
        }
        guard (1...100).contains(retries) else { throw ValidationError("--retries must be between 1 and 100, got \(retries)") }
    }

    /// Sets what these options decide in a registry configuration: logging, connections, timeouts, retries.
    func apply(to configuration: inout RegistryConfiguration) {
        configuration.logger = logger
        configuration.maxConnections = max(8, jobs * 2)
        configuration.idleTimeout = .seconds(timeout)
        configuration.maxAttempts = retries
        configuration.proxies = network.proxies
        configuration.trustRoots = network.trustRoots
    }

    var logger: Logger {
        var logger = Logger(label: "dkp-mirror")
        let debugLevel = ProcessInfo.processInfo.environment["MIRROR_DEBUG_LOG"].flatMap { Int($0) } ?? 0
        logger.logLevel = verbose || debugLevel > 0 ? .debug : .notice
        return logger
    }
}

/// The proxy and the system trust for every connection the command makes (registries, token
/// services, blob storage, the Kubernetes API): `--proxy`, the proxy variables, `SSL_CERT_FILE`
/// and `SSL_CERT_DIR`. Checked when the command line is read, so a bad value is exit code 2.
struct NetworkOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Send every request through this proxy: http://[USER:PASSWORD@]HOST:PORT or socks5://HOST:PORT. Overrides HTTPS_PROXY, HTTP_PROXY and ALL_PROXY (read lowercase first); NO_PROXY still applies. Loopback addresses are proxied too unless NO_PROXY names them.", valueName: "URL"))
    var proxy: String?

    func validate() throws {
        do {
            _ = try ProxySettings.resolve(override: proxy)
            _ = try SystemTrust.roots()
        } catch let error as NetworkSettingsError {
            throw ValidationError(error.description)
        }
    }

    /// The proxy settings in force (`validate` has checked they can be read).
    var proxies: ProxySettings { (try? ProxySettings.resolve(override: proxy)) ?? .direct }
    /// The system trust in force (`validate` has checked it can be read).
    var trustRoots: NIOSSLTrustRoots { (try? SystemTrust.roots()) ?? .default }
}

/// How to reach a registry: `--insecure`, `--tls-skip-verify`, `--ca-file` (cli.md's common options).
struct TransportOptions: ParsableArguments {
    @Flag(help: "Talk plain HTTP to the registry.")
    var insecure = false

    @Flag(help: "HTTPS without certificate verification.")
    var tlsSkipVerify = false

    @Option(help: ArgumentHelp("Trust this CA bundle in addition to the system's.", valueName: "PEM"))
    var caFile: String?

    /// A registry configuration with these options, the common ones (logging, connections) and `credential`.
    func configuration(common: CommonOptions, credential: Credential?) -> RegistryConfiguration {
        var configuration = RegistryConfiguration()
        configuration.insecure = insecure
        configuration.tlsSkipVerify = tlsSkipVerify
        configuration.caFile = caFile
        common.apply(to: &configuration)
        configuration.credential = credential
        return configuration
    }
}

/// `inspect` and `tags`: the transport options plus whom to log in as.
struct ConnectionOptions: ParsableArguments {
    @OptionGroup var transport: TransportOptions

    @Option(name: [.customShort("u"), .customLong("login")], help: "Registry username (default: from the docker config).")
    var login: String?

    @Option(name: [.customShort("p"), .customLong("password")], help: "Registry password.")
    var password: String?

    @Flag(help: "Read the registry password from stdin.")
    var passwordStdin = false

    func configuration(host: String, common: CommonOptions) throws -> RegistryConfiguration {
        let credential = try resolveCredential(
            host: host, login: login, password: password, passwordStdin: passwordStdin,
            names: ("--login", "--password", "--password-stdin"), environment: nil)
        var configuration = transport.configuration(common: common, credential: credential)
        configuration.optionNames.login = "--login"
        configuration.optionNames.password = "--password"
        return configuration
    }
}

/// `push` and `verify --registry`: the cluster's registry, its read-write user, the modules path.
struct TargetRegistryOptions: ParsableArguments {
    @Option(name: [.customShort("u"), .customLong("registry-login")], help: "Username (env D8_MIRROR_REGISTRY_LOGIN).")
    var login: String?

    @Option(name: [.customShort("p"), .customLong("registry-password")], help: "Password (env D8_MIRROR_REGISTRY_PASSWORD).")
    var password: String?

    @Flag(help: "Read the password from stdin.")
    var registryPasswordStdin = false

    // An empty value is the default, as d8 reads it (NormalizeModulesPath); "/" is TARGET itself.
    @Option(help: "Path below TARGET for modules (\"/\" for TARGET itself; empty: the default).",
            transform: { $0.isEmpty ? "/modules" : $0 })
    var modulesPathSuffix = "/modules"

    @Option(help: "Path below TARGET for packages (\"/\" for TARGET itself; empty: the default).",
            transform: { $0.isEmpty ? "/packages" : $0 })
    var packagesPathSuffix = "/packages"

    @OptionGroup var transport: TransportOptions

    func configuration(host: String, common: CommonOptions) throws -> RegistryConfiguration {
        let credential = try resolveCredential(
            host: host, login: login, password: password, passwordStdin: registryPasswordStdin,
            names: ("--registry-login", "--registry-password", "--registry-password-stdin"),
            environment: ("D8_MIRROR_REGISTRY_LOGIN", "D8_MIRROR_REGISTRY_PASSWORD"))
        return transport.configuration(common: common, credential: credential)
    }
}

/// Opens a bundle; one that cannot be read (a missing chunk, a truncated tar, a layout
/// without oci-layout) is bad input: exit 2, naming the file.
func openBundle(_ directory: String) throws -> BundleIndex {
    do {
        return try BundleIndex.open(directory: (directory as NSString).standardizingPath)
    } catch {
        throw UsageError("\(error)")
    }
}

/// `copy`'s source side: the connection options with a `--src-` prefix.
struct SourceOptions: ParsableArguments {
    @Flag(name: .customLong("src-insecure"), help: "Talk plain HTTP to the source registry.")
    var insecure = false
    @Flag(name: .customLong("src-tls-skip-verify"), help: "HTTPS to the source without certificate verification.")
    var tlsSkipVerify = false
    @Option(name: .customLong("src-ca-file"), help: ArgumentHelp("Trust this CA bundle for the source.", valueName: "PEM"))
    var caFile: String?
    @Option(name: [.customLong("src-login"), .customLong("source-login")], help: "Source username (env D8_MIRROR_SOURCE_LOGIN).")
    var login: String?
    @Option(name: [.customLong("src-password"), .customLong("source-password")], help: "Source password (env D8_MIRROR_SOURCE_PASSWORD).")
    var password: String?
    @Flag(name: [.customLong("src-password-stdin"), .customLong("source-password-stdin")], help: "Read the source password from stdin.")
    var passwordStdin = false
}

/// `copy`'s destination side: the connection options with a `--dest-` prefix.
struct DestinationOptions: ParsableArguments {
    @Flag(name: .customLong("dest-insecure"), help: "Talk plain HTTP to the destination registry.")
    var insecure = false
    @Flag(name: .customLong("dest-tls-skip-verify"), help: "HTTPS to the destination without certificate verification.")
    var tlsSkipVerify = false
    @Option(name: .customLong("dest-ca-file"), help: ArgumentHelp("Trust this CA bundle for the destination.", valueName: "PEM"))
    var caFile: String?
    @Option(name: [.customLong("dest-login"), .customLong("registry-login")], help: "Destination username (env D8_MIRROR_REGISTRY_LOGIN).")
    var login: String?
    @Option(name: [.customLong("dest-password"), .customLong("registry-password")], help: "Destination password (env D8_MIRROR_REGISTRY_PASSWORD).")
    var password: String?
    @Flag(name: [.customLong("dest-password-stdin"), .customLong("registry-password-stdin")], help: "Read the destination password from stdin.")
    var passwordStdin = false
}

/// Credentials by precedence: the login and the password each from its option, else from its d8
/// environment variable (as d8 makes the variables the options' defaults, so `-u admin` pairs
/// with `D8_MIRROR_REGISTRY_PASSWORD`), else the docker config. A login without a password (or
/// the reverse) is a usage error rather than a silent anonymous try.
func resolveCredential(host: String, login: String?, password: String?, passwordStdin: Bool,
                       names: (login: String, password: String, stdin: String),
                       environment: (login: String, password: String)?) throws -> Credential? {
    var password = password
    if passwordStdin {
        guard password == nil else { throw UsageError("pass either \(names.password) or \(names.stdin), not both") }
        password = try readSecretFromStdin(option: names.stdin, what: "password")
    }
    let env = ProcessInfo.processInfo.environment
    let envLogin = environment.flatMap { env[$0.login] }.flatMap { $0.isEmpty ? nil : $0 }
    let envPassword = environment.flatMap { env[$0.password] }
    let loginFromOption = login != nil
    guard let login = login ?? envLogin else {
        if password != nil { throw UsageError("\(names.password) needs \(names.login)\(environment.map { " (or \($0.login))" } ?? "")") }
        // As d8 refuses a password without a user: a silent anonymous try would be refused later, less clearly.
        if let environment, envPassword?.isEmpty == false {
            throw UsageError("\(environment.password) is set but no login: pass \(names.login) or set \(environment.login)")
        }
        return try DockerConfig().credential(for: host)
    }
    guard let password = password ?? envPassword else {
        let from = loginFromOption ? "\(names.login) is given" : "\(environment?.login ?? names.login) is set"
        throw UsageError("\(from) but no password: pass \(names.password) or \(names.stdin)\(environment.map { ", or set \($0.password)" } ?? "")")
    }
    return Credential(username: login, password: password)
}

/// A secret piped into standard input (`--registry-password-stdin` and the like), its trailing newline dropped.
func readSecretFromStdin(option: String, what: String) throws -> String {
    let data = FileHandle.standardInput.readDataToEndOfFile()
    let secret = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
    if secret.isEmpty {
        throw UsageError("\(option): standard input held no \(what); pipe it in, e.g. printf %s \"$SECRET\" | dkp-mirror ...")
    }
    return secret
}

/// Parses a push or verify target as d8 takes it: an `http://` or `https://` prefix and
/// trailing slashes are dropped. The scheme must agree with `--insecure` (plain HTTP).
func parseTarget(_ text: String, what: String, insecure: Bool) throws -> Reference {
    var rest = Substring(text)
    var scheme: String?
    for prefix in ["http://", "https://"] where rest.lowercased().hasPrefix(prefix) {
        scheme = String(prefix.dropLast(3))
        rest = rest.dropFirst(prefix.count)
    }
    while rest.hasSuffix("/") { rest = rest.dropLast() }
    if scheme == "http" && !insecure {
        throw UsageError("\(what) \(text) is plain HTTP: pass --insecure to talk HTTP to it, or give https:// (or no scheme) for TLS")
    }
    if scheme == "https" && insecure {
        throw UsageError("\(what) \(text) says https:// but --insecure asks for plain HTTP: drop one of them")
    }
    return try parseReference(String(rest), what: what)
}

/// Parses a reference given on the command line; a malformed one is a usage error (exit 2).
func parseReference(_ text: String, what: String) throws -> Reference {
    do {
        return try Reference(parsing: text)
    } catch {
        throw UsageError("\(what): \(error)")
    }
}

import OCI

/// How blobs go up to the destination (push, copy).
struct UploadOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Send every blob larger than this in requests of at most this many MiB (decimals allowed), for an Ingress or proxy "
                               + "that limits a request's body and cannot be changed (ingress-nginx's default limit is 1m: pass 0.9). "
                               + "Default: each blob in one request.", valueName: "MiB"))
    var uploadChunkSize: Double?

    func validate() throws {
        // 64 KiB at least (below it a gigabyte blob takes tens of thousands of requests), 512 MiB
        // at most (each upload holds one chunk in memory).
        if let uploadChunkSize, !(uploadChunkSize >= 0.0625 && uploadChunkSize <= 512) {
            throw ValidationError("--upload-chunk-size is in MiB, from 0.0625 (64 KiB) to 512, e.g. 0.9 below a 1m limit; got \(uploadChunkSize)")
        }
    }

    func apply(to configuration: inout RegistryConfiguration) {
        guard let uploadChunkSize else { return }
        // A blob up to the chunk goes in one PUT, any larger one in PATCHes of the chunk: no request is larger.
        let bytes = Int(uploadChunkSize * 1_048_576)
        configuration.uploadChunkSize = bytes
        configuration.monolithicUploadLimit = min(configuration.monolithicUploadLimit, Int64(bytes))
    }
}
