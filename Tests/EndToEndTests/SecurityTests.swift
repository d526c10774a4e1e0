import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// Security properties of the real executable: secrets never printed, TLS verified by
/// default, tar entries that leave their folder refused, oversized manifests and token
/// responses refused.
@Suite struct SecurityTests {
    /// Distinctive secrets: any of them (or a form derived from them) in any output is a leak.
    struct Secrets {
        let tag = String(UUID().uuidString.prefix(8))
        var license: String { "LiCeNsE-kEy-\(tag)-7731" }
        var sourcePassword: String { "SrC-pAsS-\(tag)-0442" }
        var targetPassword: String { "TgT-pAsS-\(tag)-5519" }
        var wrongPassword: String { "WrOnG-pAsS-\(tag)-9087" }
        var kubeToken: String { "KuBe-ToKeN-\(tag)-3318" }
        var kubePassword: String { "KuBe-PaSs-\(tag)-6624" }

        var all: [String] { [license, sourcePassword, targetPassword, wrongPassword, kubeToken, kubePassword] }

        /// The secrets as they travel: raw, Basic `user:password` in base64 (with and without
        /// padding, standard and URL alphabets), percent-encoded.
        func forms(users: [String]) -> [String] {
            var forms = all
            for secret in all {
                for user in users {
                    let basic = Data("\(user):\(secret)".utf8).base64EncodedString()
                    forms.append(basic)
                    forms.append(basic.replacingOccurrences(of: "=", with: ""))
                    forms.append(basic.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_"))
                }
                forms.append(secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? secret)
            }
            return forms
        }
    }

    /// Output modes every credentialed run is repeated in.
    static let modes: [[String]] = [
        ["--json", "--progress", "json"],
        ["--progress", "plain"],
        ["--progress", "plain", "-v"],
    ]

    struct Run {
        let label: String
        let output: TestProcess.Output
    }

    /// Asserts no secret form and no issued token appears in any output.
    static func expectNoSecrets(_ runs: [Run], secrets: Secrets, users: [String], tokens: [String],
                                sourceLocation: SourceLocation = #_sourceLocation) {
        let forms = secrets.forms(users: users) + tokens + tokens.map { String($0.prefix(40)) }
        for run in runs {
            let text = run.output.stdoutString + "\n" + run.output.stderrString
            for form in forms where text.contains(form) {
                Issue.record("\(run.label) printed a secret (\(form.prefix(12))...): \(text.prefix(2_000))",
                             sourceLocation: sourceLocation)
            }
            #expect(!text.lowercased().contains("authorization:"), "\(run.label): \(text.prefix(500))", sourceLocation: sourceLocation)
        }
    }

    /// A port on 127.0.0.1 nobody listens on.
    static func closedPort() async throws -> Int {
        let server = try await TestHTTPServer.start { _ in .notFound() }
        let port = server.port
        try await server.shutdown()
        return port
    }

    /// Every command that takes credentials, with good and bad ones, in every output mode.
    @Test func secretsNeverAppearInAnyOutput() async throws {
        let secrets = Secrets()
        // Source: distribution with token auth; the license key and a source user are accepted.
        let issuer = try await TokenIssuer.start(users: [
            "license-token": secrets.license, "puller": secrets.sourcePassword, "seeder": secrets.sourcePassword,
        ])
        let source = try await TestRegistry.start(token: issuer)
        var seedConfiguration = RegistryConfiguration()
        seedConfiguration.insecure = true
        seedConfiguration.credential = Credential(username: "seeder", password: secrets.sourcePassword)
        let seedClient = try RegistryClient(host: source.host, configuration: seedConfiguration)
        var options = EditionSeeder.Options()
        options.modules = ["console": ["stable": "v1.1.5", "alpha": "v1.1.5"]]
        options.moduleWithExtra = "console"
        do { _ = try await EditionSeeder(client: seedClient, options: options).seed() } catch {
            await seedClient.shutdown()
            throw error
        }
        await seedClient.shutdown()
        // Target: TLS + htpasswd, as the cluster's registry.
        let target = try await TestRegistry.start(tls: true, users: ["rw": secrets.targetPassword])
        let caFile = try #require(target.caFile)
        let closed = try await Self.closedPort()
        let edition = "\(source.host)/deckhouse/ee"
        let dest = "\(target.host)/system/deckhouse"
        var runs = [Run]()
        func run(_ label: String, _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
                 expect status: Int32) async throws {
            let output = try await CLITests.run(arguments, stdin: stdin, environment: environment)
            #expect(output.status == status, "\(label): \(output.stderrString.prefix(1_000))")
            runs.append(Run(label: label, output: output))
        }

        var bundle: URL?
        for (m, mode) in Self.modes.enumerated() {
            // pull: license key by flag and by environment, source user, then failures.
            let directory = try TestRegistry.temporaryDirectory("dkp-sec-bundle")
            try await run("pull --license \(mode)", ["pull", directory.path, "--source", edition, "--insecure",
                                                      "--license", secrets.license, "--deckhouse-tag", "v1.69.3"] + mode, expect: 0)
            if bundle == nil { bundle = directory }
            try await run("pull env license \(mode)", ["pull", try TestRegistry.temporaryDirectory("dkp-sec-b").path,
                                                       "--source", edition, "--insecure", "--dry-run"] + mode,
                          environment: ["D8_MIRROR_LICENSE_TOKEN": secrets.license], expect: 0)
            try await run("pull --source-login \(mode)", ["pull", try TestRegistry.temporaryDirectory("dkp-sec-b").path,
                                                          "--source", edition, "--insecure", "--dry-run", "--source-login", "puller",
                                                          "--source-password", secrets.sourcePassword] + mode, expect: 0)
            try await run("pull --license-stdin \(mode)", ["pull", try TestRegistry.temporaryDirectory("dkp-sec-b").path,
                                                            "--source", edition, "--insecure", "--dry-run", "--license-stdin"] + mode,
                          stdin: secrets.license + "\n", expect: 0)
            try await run("pull --source-password-stdin \(mode)", ["pull", try TestRegistry.temporaryDirectory("dkp-sec-b").path,
                                                                    "--source", edition, "--insecure", "--dry-run", "--source-login", "puller",
                                                                    "--source-password-stdin"] + mode, stdin: secrets.sourcePassword, expect: 0)
            try await run("pull --license-stdin empty \(mode)", ["pull", try TestRegistry.temporaryDirectory("dkp-sec-b").path,
                                                                  "--source", edition, "--insecure", "--license-stdin"] + mode,
                          stdin: "", expect: 2)
            try await run("pull wrong license \(mode)", ["pull", try TestRegistry.temporaryDirectory("dkp-sec-b").path,
                                                         "--source", edition, "--insecure", "--license", secrets.wrongPassword] + mode,
                          expect: 1)
            try await run("pull unreachable \(mode)", ["pull", try TestRegistry.temporaryDirectory("dkp-sec-b").path,
                                                       "--source", "127.0.0.1:\(closed)/deckhouse/ee", "--insecure",
                                                       "--license", secrets.license, "--retries", "1"] + mode, expect: 1)
            let pulled = try #require(bundle)

            // push: -p, stdin, environment; wrong password, unreachable, bad CA.
            try await run("push -p \(mode)", ["push", pulled.path, dest, "--ca-file", caFile, "-u", "rw",
                                               "-p", secrets.targetPassword] + mode, expect: 0)
            try await run("push stdin \(mode)", ["push", pulled.path, dest, "--ca-file", caFile, "-u", "rw",
                                                  "--registry-password-stdin"] + mode, stdin: secrets.targetPassword, expect: 0)
            try await run("push env \(mode)", ["push", pulled.path, dest, "--ca-file", caFile] + mode,
                          environment: ["D8_MIRROR_REGISTRY_LOGIN": "rw", "D8_MIRROR_REGISTRY_PASSWORD": secrets.targetPassword],
                          expect: 0)
            // Each of the two from its option or else its variable, as d8 pairs them.
            try await run("push -u with env password \(mode)", ["push", pulled.path, dest, "--ca-file", caFile, "-u", "rw"] + mode,
                          environment: ["D8_MIRROR_REGISTRY_PASSWORD": secrets.targetPassword], expect: 0)
            try await run("push env login with -p \(mode)", ["push", pulled.path, dest, "--ca-file", caFile, "-p", secrets.targetPassword] + mode,
                          environment: ["D8_MIRROR_REGISTRY_LOGIN": "rw"], expect: 0)
            try await run("push wrong \(mode)", ["push", pulled.path, dest, "--ca-file", caFile, "-u", "rw",
                                                  "-p", secrets.wrongPassword] + mode, expect: 1)
            try await run("push unreachable \(mode)", ["push", pulled.path, "127.0.0.1:\(closed)/system/deckhouse", "-u", "rw",
                                                        "-p", secrets.targetPassword, "--retries", "1"] + mode, expect: 1)
            try await run("push bad CA \(mode)", ["push", pulled.path, dest, "--ca-file", issuer.certFile, "-u", "rw",
                                                   "-p", secrets.targetPassword] + mode, expect: 1)

            // verify --registry.
            try await run("verify --registry \(mode)", ["verify", pulled.path, "--registry", dest, "--ca-file", caFile,
                                                         "-u", "rw", "-p", secrets.targetPassword] + mode, expect: 0)
            try await run("verify --registry wrong \(mode)", ["verify", pulled.path, "--registry", dest, "--ca-file", caFile,
                                                               "-u", "rw", "-p", secrets.wrongPassword] + mode, expect: 1)

            // copy: both sides credentialed (token source, htpasswd TLS target).
            try await run("copy \(mode)", ["copy", "\(edition):v1.69.3", "\(target.host)/copied/ee-\(m)", "--src-insecure",
                                            "--src-login", "puller", "--src-password", secrets.sourcePassword,
                                            "--dest-ca-file", caFile, "--dest-login", "rw", "--dest-password", secrets.targetPassword]
                          + mode, expect: 0)
            try await run("copy src stdin \(mode)", ["copy", "\(edition):v1.69.3", "\(target.host)/copied/ee-stdin-\(m)", "--src-insecure",
                                                      "--src-login", "puller", "--src-password-stdin",
                                                      "--dest-ca-file", caFile, "--dest-login", "rw", "--dest-password", secrets.targetPassword]
                          + mode, stdin: secrets.sourcePassword, expect: 0)
            try await run("copy both stdin \(mode)", ["copy", "\(edition):v1.69.3", "\(target.host)/copied/x", "--src-insecure",
                                                       "--src-login", "puller", "--src-password-stdin",
                                                       "--dest-ca-file", caFile, "--dest-login", "rw", "--dest-password-stdin"]
                          + mode, stdin: secrets.sourcePassword, expect: 2)
            try await run("copy wrong src \(mode)", ["copy", "\(edition):v1.69.3", "\(target.host)/copied/x", "--src-insecure",
                                                      "--src-login", "puller", "--src-password", secrets.wrongPassword,
                                                      "--dest-ca-file", caFile, "--dest-login", "rw",
                                                      "--dest-password", secrets.targetPassword] + mode, expect: 1)
            try await run("copy wrong dest \(mode)", ["copy", "\(edition):v1.69.3", "\(target.host)/copied/x", "--src-insecure",
                                                       "--src-login", "puller", "--src-password", secrets.sourcePassword,
                                                       "--dest-ca-file", caFile, "--dest-login", "rw",
                                                       "--dest-password", secrets.wrongPassword] + mode, expect: 1)

            // tags and inspect, token and htpasswd registries.
            try await run("tags \(mode)", ["tags", edition, "--insecure", "-u", "puller", "-p", secrets.sourcePassword] + mode,
                          expect: 0)
            try await run("tags wrong \(mode)", ["tags", edition, "--insecure", "-u", "puller", "-p", secrets.wrongPassword] + mode,
                          expect: 1)
            try await run("tags stdin TLS \(mode)", ["tags", dest, "--ca-file", caFile, "-u", "rw", "--password-stdin"] + mode,
                          stdin: secrets.targetPassword, expect: 0)
            try await run("inspect \(mode)", ["inspect", "\(edition):v1.69.3", "--insecure", "-u", "puller",
                                               "-p", secrets.sourcePassword] + mode, expect: 0)
            try await run("inspect --raw \(mode)", ["inspect", "\(dest):v1.69.3", "--raw", "--ca-file", caFile, "-u", "rw",
                                                     "-p", secrets.targetPassword] + mode, expect: 0)
            try await run("inspect wrong \(mode)", ["inspect", "\(dest):v1.69.3", "--ca-file", caFile, "-u", "rw",
                                                     "-p", secrets.wrongPassword] + mode, expect: 1)
            try await run("inspect bad CA \(mode)", ["inspect", "\(dest):v1.69.3", "--ca-file", issuer.certFile, "-u", "rw",
                                                      "-p", secrets.targetPassword] + mode, expect: 1)
            try await run("inspect unreachable \(mode)", ["inspect", "127.0.0.1:\(closed)/a/b:v1", "--insecure", "-u", "rw",
                                                           "-p", secrets.targetPassword, "--retries", "1"] + mode, expect: 1)
        }

        // detect: a kubeconfig with a bearer token, one with basic auth; right and wrong.
        // The cluster's registry secret holds the source's credentials: detect reads the
        // edition out of the controller image with them, so they must stay unprinted too.
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(edition):v1.69.3"
        objects.registrySecret = [
            "address": source.host, "path": "/deckhouse/ee", "scheme": "http",
            ".dockerconfigjson": FakeClusterObjects.dockerConfigJSON(address: source.host, username: "puller",
                                                                     password: secrets.sourcePassword),
        ]
        let api = try await FakeKubernetes.start(objects: objects, token: secrets.kubeToken, basic: ("admin", secrets.kubePassword))
        let home = try TestRegistry.temporaryDirectory("dkp-sec-kube")
        func kubeconfig(_ name: String, user: String) throws -> String {
            let path = home.appendingPathComponent(name).path
            try """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters: [{name: c, cluster: {server: "\(api.url)"}}]
            users: [{name: u, user: \(user)}]
            contexts: [{name: test, context: {cluster: c, user: u}}]
            """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let withToken = try kubeconfig("token", user: "{token: \(secrets.kubeToken)}")
        let withBasic = try kubeconfig("basic", user: "{username: admin, password: \(secrets.kubePassword)}")
        let wrongToken = try kubeconfig("wrong", user: "{token: \(secrets.wrongPassword)}")
        for mode in [["--json"], [], ["-v"]] {
            try await run("detect token \(mode)", ["detect", "--kubeconfig", withToken] + mode, expect: 0)
            #expect(runs.last?.output.stdoutString.contains("ee") == true, "\(runs.last?.output.stdoutString ?? "")")
            try await run("detect basic \(mode)", ["detect", "--kubeconfig", withBasic] + mode, expect: 0)
            let wrong = try await CLITests.run(["detect", "--kubeconfig", wrongToken] + mode)
            #expect(wrong.status != 0, "a wrong token is refused: \(wrong.stderrString)")
            runs.append(Run(label: "detect wrong \(mode)", output: wrong))
        }
        try await api.shutdown()

        #expect(runs.count > 60)
        let tokens = issuer.issuedTokens
        #expect(tokens.count > 10, "the token issuer handed out tokens (\(tokens.count))")
        Self.expectNoSecrets(runs, secrets: secrets, users: ["license-token", "puller", "rw", "admin", "seeder"], tokens: tokens)
        // The failures said what failed, without the secret.
        let wrongPush = runs.filter { $0.label.hasPrefix("push wrong") }
        #expect(wrongPush.allSatisfy { $0.output.stderrString.contains("rejected the credentials of user 'rw'") },
                "\(wrongPush.map { $0.output.stderrString })")
        try await issuer.shutdown()
    }

    // MARK: - TLS

    /// A registry with a certificate from a CA the system does not trust is refused unless the
    /// user passes its CA or asks to skip verification; the error names the host and both options.
    @Test func tlsIsVerifiedByDefault() async throws {
        let target = try await TestRegistry.start(tls: true, users: ["rw": "tls-pw-4471"])
        let caFile = try #require(target.caFile)
        let source = try await TestRegistry.start()
        try await CLITests.seed(source) { _ = try await ImageSeeder.pushImage($0, repository: "a/b", tag: "v1", layerSizes: [2048]) }
        let bundle = try TestRegistry.temporaryDirectory("dkp-sec-tls")
        let pulled = try await PullTests.pull(try await PullTests.seededEdition { $0.modules = [:] }.0, into: bundle,
                                              ["--deckhouse-tag", "v1.69.3", "--no-security-db", "--no-installer"])
        #expect(pulled.status == 0, "\(pulled.stderrString)")

        let dest = "\(target.host)/system/deckhouse"
        let refused: [(String, [String], String, String)] = [
            ("inspect", ["inspect", "\(dest):v1", "-u", "rw", "-p", "tls-pw-4471"], "--ca-file", "--tls-skip-verify"),
            ("tags", ["tags", dest, "-u", "rw", "-p", "tls-pw-4471"], "--ca-file", "--tls-skip-verify"),
            ("copy", ["copy", "\(source.host)/a/b:v1", dest, "--src-insecure", "--dest-login", "rw", "--dest-password", "tls-pw-4471"],
             "--dest-ca-file", "--dest-tls-skip-verify"),
            ("push", ["push", bundle.path, dest, "-u", "rw", "-p", "tls-pw-4471"], "--ca-file", "--tls-skip-verify"),
            ("verify --registry", ["verify", bundle.path, "--registry", dest, "-u", "rw", "-p", "tls-pw-4471"],
             "--ca-file", "--tls-skip-verify"),
            ("pull", ["pull", try TestRegistry.temporaryDirectory("dkp-sec-tls-pull").path, "--source", "\(target.host)/deckhouse/ee",
                      "--license", "tls-pw-4471"], "--ca-file", "--tls-skip-verify"),
        ]
        for (label, arguments, caOption, skipOption) in refused {
            let output = try await CLITests.run(arguments + ["--progress", "plain"])
            // One clear line on stderr for every command (verify --registry too: it fails before
            // any per-image check rather than reporting the same failure once per image).
            let stderr = output.stderrString
            #expect(!output.stdoutString.contains("items with errors"), "\(label): \(output.stdoutString)")
            #expect(output.status == 1 || output.status == 2, "\(label): \(output.status) \(stderr)")
            #expect(stderr.contains("127.0.0.1:\(target.port)"), "\(label) names the host: \(stderr)")
            #expect(stderr.contains(caOption) && stderr.contains(skipOption), "\(label) suggests both options: \(stderr)")
            #expect(stderr.lowercased().contains("certificate"), "\(label): \(stderr)")
            #expect(!stderr.contains("tls-pw-4471"))
        }
        // The same commands work once the CA is given, or verification is skipped on purpose.
        let withCA = try await CLITests.run(["push", bundle.path, dest, "-u", "rw", "-p", "tls-pw-4471", "--ca-file", caFile])
        #expect(withCA.status == 0, "\(withCA.stderrString)")
        let skipped = try await CLITests.run(["tags", dest, "-u", "rw", "-p", "tls-pw-4471", "--tls-skip-verify"])
        #expect(skipped.status == 0, "\(skipped.stderrString)")
        #expect(skipped.stdoutString.contains("v1.69.3"))
        // A CA file for some other CA is no better than none.
        let otherCA = try await TestRegistry.start(tls: true)
        let wrongCA = try await CLITests.run(["tags", dest, "-u", "rw", "-p", "tls-pw-4471", "--ca-file", try #require(otherCA.caFile)])
        #expect(wrongCA.status == 1, "\(wrongCA.stderrString)")
        #expect(wrongCA.stderrString.contains("certificate"), "\(wrongCA.stderrString)")
    }

    // MARK: - tar entries that leave their folder

    /// Writes a bundle whose platform.tar holds a valid layout plus `extra` raw entries.
    static func hostileBundle(_ extra: [UInt8], layout entries: [(name: String, data: [UInt8])]) throws -> URL {
        let directory = try TestRegistry.temporaryDirectory("dkp-sec-hostile")
        var tar = [UInt8]()
        for entry in entries {
            tar += TarHeaderBytes.regular(name: entry.name, size: entry.data.count)
            tar += entry.data + [UInt8](repeating: 0, count: (512 - entry.data.count % 512) % 512)
        }
        tar += extra
        tar += [UInt8](repeating: 0, count: 1024)
        try Data(tar).write(to: directory.appendingPathComponent("platform.tar"))
        return directory
    }

    /// A one-image layout (manifest, config, layer) tagged `v1`, and the image's blobs.
    static func oneImageLayout(layer: [UInt8]) -> (entries: [(name: String, data: [UInt8])], manifest: [UInt8]) {
        let config = Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.utf8)
        let manifest = Array(
            (#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#
             + #""config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(TestCrypto.sha256Digest(config))","size":\#(config.count)},"#
             + #""layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(TestCrypto.sha256Digest(layer))","size":\#(layer.count)}]}"#).utf8)
        let index = Array(
            (#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.layout.v1+json","manifests":[{"#
             + #""mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(TestCrypto.sha256Digest(manifest))","size":\#(manifest.count),"#
             + #""annotations":{"io.deckhouse.image.short_tag":"v1","org.opencontainers.image.ref.name":"registry.example.com/deckhouse/ee:v1"}}]}"#).utf8)
        var entries: [(name: String, data: [UInt8])] = []
        for blob in [manifest, config, layer] { entries.append(("blobs/sha256/\(TestCrypto.sha256Hex(blob))", blob)) }
        entries.append(("oci-layout", Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)))
        entries.append(("index.json", index))
        return (entries, manifest)
    }

    @Test func pushRefusesTraversalEntriesAndNeverFollowsLinks() async throws {
        let target = try await TestRegistry.start(tls: true, users: ["rw": "trav-pw-1180"])
        let caFile = try #require(target.caFile)
        let dest = "\(target.host)/system/deckhouse"
        let layer = TestCrypto.randomBytes(3000)
        let (entries, _) = Self.oneImageLayout(layer: layer)

        // 1. Names that climb out ('..', absolute): the bundle is refused before anything is sent,
        //    and nothing appears outside the bundle.
        let outsideDirectory = try TestRegistry.temporaryDirectory("dkp-sec-outside")
        for name in ["../escaped-\(UUID().uuidString.prefix(6))", "blobs/../../escaped", outsideDirectory.path + "/written"] {
            let bundle = try Self.hostileBundle(TarHeaderBytes.regular(name: name, size: 5) + Array("evil!".utf8)
                                                + [UInt8](repeating: 0, count: 507), layout: entries)
            let output = try await CLITests.run(["push", bundle.path, dest, "--ca-file", caFile, "-u", "rw", "-p", "trav-pw-1180",
                                                 "--progress", "plain"])
            #expect(output.status == 2, "\(name): \(output.status) \(output.stderrString)")
            #expect(output.stderrString.contains(name), "names the entry: \(output.stderrString)")
            #expect(output.stderrString.contains("platform.tar"), "\(output.stderrString)")
            #expect(output.stderrString.split(separator: "\n").count <= 2, "\(output.stderrString)")
            let parent = bundle.deletingLastPathComponent()
            #expect(!FileManager.default.fileExists(atPath: parent.appendingPathComponent("escaped").path))
            #expect(try FileManager.default.contentsOfDirectory(atPath: outsideDirectory.path).isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: bundle.path) == ["platform.tar"], "push writes nothing into the bundle")
        }
        // Nothing reached the registry.
        let tags = try await CLITests.run(["tags", dest, "--ca-file", caFile, "-u", "rw", "-p", "trav-pw-1180"])
        #expect(tags.stdoutString.isEmpty, "\(tags.stdoutString)")

        // 2. The layer blob is a symlink (then a hard link) to a file outside the bundle that has
        //    exactly the digest the manifest asks for: push must not read that file.
        let secretFile = outsideDirectory.appendingPathComponent("layer-outside")
        try Data(layer).write(to: secretFile)
        let layerName = "blobs/sha256/\(TestCrypto.sha256Hex(layer))"
        for type in [UInt8(ascii: "2"), UInt8(ascii: "1")] {
            let withoutLayer = entries.filter { $0.name != layerName }
            let link = TarHeaderBytes.link(name: layerName, type: type, target: secretFile.path)
            let bundle = try Self.hostileBundle(link, layout: withoutLayer)
            let repository = "system/deckhouse"
            let output = try await CLITests.run(["push", bundle.path, dest, "--ca-file", caFile, "-u", "rw", "-p", "trav-pw-1180",
                                                 "--progress", "plain", "--json"])
            #expect(output.status != 0, "type \(type): a bundle missing its layer is not pushed: \(output.stderrString)")
            // The link is not an entry with data: push says the layer is missing from the bundle.
            #expect(output.stderrString.contains("blob \(TestCrypto.sha256Digest(layer)) is missing from the bundle"),
                    "\(output.stderrString)")
            try await CLITests.seed(target, user: "rw", password: "trav-pw-1180") { client in
                let present = try await client.blobSize(repository: repository, digest: try Digest(parsing: TestCrypto.sha256Digest(layer)))
                #expect(present == nil, "the file outside the bundle was uploaded")
            }
        }
    }

    // MARK: - size limits

    /// A scripted registry (distribution 2.8.2 refuses to store manifests over 4 MiB) that serves a 5 MiB manifest under `big/img:v1` and an index of 5 MiB under `big/idx:v1`.
    @Test func manifestsOverFourMiBAreRefused() async throws {
        let hex = String(repeating: "a", count: 64)
        var manifest = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#.utf8)
        manifest += [UInt8](repeating: UInt8(ascii: "x"), count: 5 << 20)
        manifest += Array(#""},"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\#(hex)","size":2},"layers":[]}"#.utf8)
        var index = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#.utf8)
        let item = #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\#(hex)","size":2},"#
        index += Array(String(repeating: item, count: (5 << 20) / item.utf8.count).utf8)
        index.removeLast()
        index += Array("]}".utf8)
        let bigManifest = manifest
        let bigIndex = index
        let server = try await TestHTTPServer.start { request in
            switch request.path {
            case "/v2/", "/v2":
                return TestHTTPResponse(status: 200, headers: [("Docker-Distribution-API-Version", "registry/2.0")], text: "{}")
            case "/v2/big/img/manifests/v1":
                return TestHTTPResponse(status: 200, headers: [
                    ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                    ("Docker-Content-Digest", TestCrypto.sha256Digest(bigManifest)),
                ], body: request.method == "HEAD" ? [] : bigManifest)
            case "/v2/big/idx/manifests/v1":
                return TestHTTPResponse(status: 200, headers: [
                    ("Content-Type", "application/vnd.oci.image.index.v1+json"),
                    ("Docker-Content-Digest", TestCrypto.sha256Digest(bigIndex)),
                ], body: request.method == "HEAD" ? [] : bigIndex)
            default:
                return .notFound()
            }
        }
        let target = try await TestRegistry.start()
        for repository in ["big/img", "big/idx"] {
            let reference = "\(server.host)/\(repository):v1"
            for arguments in [["inspect", reference, "--insecure"], ["inspect", reference, "--insecure", "--raw"],
                              ["copy", reference, "\(target.host)/copied/x", "--insecure"]] {
                let output = try await CLITests.run(arguments + ["--progress", "plain"])
                #expect(output.status == 1, "\(arguments): \(output.status) \(output.stderrString)")
                #expect(output.stderrString.contains("\(4 << 20)-byte limit"), "\(arguments): \(output.stderrString)")
                #expect(output.stderrString.contains(repository), "names what: \(output.stderrString)")
                #expect(output.stdout.count < 1 << 20, "the body is not printed")
            }
        }
        // Nothing arrived at the copy's target.
        let tags = try await CLITests.run(["tags", "\(target.host)/copied/x", "--insecure"])
        #expect(tags.stdoutString.isEmpty)
        try await server.shutdown()
    }

    /// A token service that answers 2 MiB: refused at the 1 MiB limit, with a clear message.
    @Test func tokenResponsesOverOneMiBAreRefused() async throws {
        let issuer = try await TokenIssuer.start(users: ["puller": "tok-pw-2231"])
        let registry = try await TestRegistry.start(token: issuer)
        let padding = String(repeating: "p", count: 2 << 20)
        issuer.server.setHandler { request in
            guard request.path == "/token" else { return .notFound() }
            return .json(#"{"token":"\#(padding)","expires_in":300}"#)
        }
        for arguments in [["inspect", "\(registry.host)/a/b:v1"], ["tags", "\(registry.host)/a/b"],
                          ["copy", "\(registry.host)/a/b:v1", "\(registry.host)/c/d"]] {
            let output = try await CLITests.run(arguments + ["--insecure", "--progress", "plain"]
                                                + (arguments[0] == "copy" ? ["--src-login", "puller", "--src-password", "tok-pw-2231"]
                                                   : ["-u", "puller", "-p", "tok-pw-2231"]))
            #expect(output.status == 1, "\(arguments): \(output.status) \(output.stderrString)")
            #expect(output.stderrString.contains("token response"), "\(arguments): \(output.stderrString)")
            #expect(output.stderrString.contains("\(1 << 20)-byte limit"), "\(arguments): \(output.stderrString)")
            #expect(output.stderrString.count < 2_000, "the answer is not echoed")
            #expect(!output.stderrString.contains("tok-pw-2231"))
        }
        try await issuer.shutdown()
    }
}

/// Raw tar header blocks for hostile bundles (any type flag and link name).
enum TarHeaderBytes {
    static func regular(name: String, size: Int) -> [UInt8] {
        block(name: name, type: UInt8(ascii: "0"), link: "", size: size)
    }

    static func link(name: String, type: UInt8, target: String) -> [UInt8] {
        block(name: name, type: type, link: target, size: 0)
    }

    static func block(name: String, type: UInt8, link: String, size: Int) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, width: Int) {
            for (i, byte) in Array(text.utf8).prefix(width).enumerated() { block[offset + i] = byte }
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: width - 1 - digits.count) + digits, at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(0o644, at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(0, at: 136, width: 12)
        block[156] = type
        put(link, at: 157, width: 100)
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        for i in 148..<156 { block[i] = 0x20 }
        let sum = block.reduce(0) { $0 + Int($1) }
        let digits = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - digits.count) + digits, at: 148, width: 6)
        block[154] = 0
        block[155] = 0x20
        return block
    }
}
