import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Deckhouse objects a fake Kubernetes API serves, in the shapes a real API server
/// returns (trimmed recordings of a DKP 1.69 cluster).
public struct FakeClusterObjects: Sendable {
    /// The image of container `deckhouse` of deployment d8-system/deckhouse; nil: no deployment (404).
    public var deckhouseImage: String? = "registry.example.com/system/deckhouse:v1.69.3"
    /// Values of secret d8-system/deckhouse-registry (served base64-encoded); nil: no secret (404).
    public var registrySecret: [String: String]? = [
        "address": "registry.example.com", "path": "/system/deckhouse", "scheme": "https",
    ]
    /// `.spec.settings.license.edition` of ModuleConfig deckhouse (absent when nil).
    public var moduleConfigEdition: String?
    /// Whether ModuleConfig deckhouse exists (404 otherwise).
    public var moduleConfigExists = true
    /// Paths answered with 403 Forbidden.
    public var forbiddenPaths: Set<String> = []
    /// More objects by API path (e.g. recordings from testdata/cluster), answered 200 as given.
    public var extraObjects: [String: String] = [:]

    public init() {}

    public static let deploymentPath = "/apis/apps/v1/namespaces/d8-system/deployments/deckhouse"
    public static let secretPath = "/api/v1/namespaces/d8-system/secrets/deckhouse-registry"
    public static let moduleConfigPath = "/apis/deckhouse.io/v1alpha1/moduleconfigs/deckhouse"

    /// `.dockerconfigjson` for one registry and user, as Deckhouse writes it.
    public static func dockerConfigJSON(address: String, username: String, password: String) -> String {
        let auth = Data("\(username):\(password)".utf8).base64EncodedString()
        return json(["auths": [address: ["auth": auth]]])
    }

    /// The body of `path` (status, JSON), whoever asks.
    public func answer(path: String) -> (status: Int, body: String) {
        if forbiddenPaths.contains(path) {
            let resource = path == Self.secretPath ? "secrets" : path == Self.moduleConfigPath ? "moduleconfigs.deckhouse.io" : "deployments.apps"
            let name = path == Self.secretPath ? "deckhouse-registry" : "deckhouse"
            return (403, Self.status(code: 403, reason: "Forbidden",
                                     message: "\(resource) \"\(name)\" is forbidden: User \"system:serviceaccount:default:reader\" cannot get resource \"\(resource.split(separator: ".").first ?? "")\" in API group \"\" in the namespace \"d8-system\""))
        }
        if let body = extraObjects[path] { return (200, body) }
        switch path {
        case Self.deploymentPath:
            guard let image = deckhouseImage else { return Self.notFound("deployments.apps", "deckhouse") }
            return (200, Self.deployment(image: image))
        case Self.secretPath:
            guard let values = registrySecret else { return Self.notFound("secrets", "deckhouse-registry") }
            return (200, Self.secret(values: values))
        case Self.moduleConfigPath:
            guard moduleConfigExists else { return Self.notFound("moduleconfigs.deckhouse.io", "deckhouse") }
            return (200, Self.moduleConfig(edition: moduleConfigEdition))
        default:
            return (404, Self.status(code: 404, reason: "NotFound", message: "the server could not find the requested resource"))
        }
    }

    static func notFound(_ resource: String, _ name: String) -> (Int, String) {
        (404, status(code: 404, reason: "NotFound", message: "\(resource) \"\(name)\" not found"))
    }

    /// A `metav1.Status` body.
    public static func status(code: Int, reason: String, message: String) -> String {
        json(["kind": "Status", "apiVersion": "v1", "metadata": [String: Any](), "status": "Failure",
              "message": message, "reason": reason, "code": code])
    }

    public static func deployment(image: String) -> String {
        json([
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": [
                "name": "deckhouse", "namespace": "d8-system", "uid": "6c1d4c5e-2d7b-4b5e-9a55-0d6f1b0b5a11",
                "resourceVersion": "48213377", "generation": 27, "creationTimestamp": "2024-03-11T09:41:12Z",
                "labels": ["app": "deckhouse", "heritage": "deckhouse", "module": "deckhouse"],
                "annotations": ["deployment.kubernetes.io/revision": "27", "meta.helm.sh/release-name": "deckhouse"],
            ],
            "spec": [
                "replicas": 1, "revisionHistoryLimit": 2,
                "selector": ["matchLabels": ["app": "deckhouse"]],
                "strategy": ["type": "Recreate"],
                "template": [
                    "metadata": ["labels": ["app": "deckhouse"], "annotations": ["kubectl.kubernetes.io/default-container": "deckhouse"]],
                    "spec": [
                        "initContainers": [[
                            "name": "init-downloaded-modules", "image": image,
                            "command": ["sh", "-c", "mkdir -p /deckhouse/downloaded/modules"],
                        ]],
                        "containers": [
                            [
                                "name": "deckhouse", "image": image, "imagePullPolicy": "Always",
                                "command": ["/usr/bin/deckhouse-controller", "start"],
                                "env": [["name": "DECKHOUSE_BUNDLE", "value": "Default"], ["name": "LOG_LEVEL", "value": "Info"]],
                                "ports": [["containerPort": 4222, "name": "self", "protocol": "TCP"]],
                                "resources": ["requests": ["cpu": "50m", "memory": "512Mi"]],
                                "workingDir": "/deckhouse",
                            ],
                            [
                                "name": "kube-rbac-proxy", "image": "registry.example.com/system/deckhouse@sha256:" + String(repeating: "ab", count: 32),
                                "args": ["--secure-listen-address=$(KUBE_RBAC_PROXY_LISTEN_ADDRESS):9650"],
                            ],
                        ],
                        "imagePullSecrets": [["name": "deckhouse-registry"]],
                        "serviceAccountName": "deckhouse", "hostNetwork": true, "dnsPolicy": "Default",
                        "nodeSelector": ["node-role.kubernetes.io/control-plane": ""],
                    ],
                ],
            ],
            "status": ["replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1, "observedGeneration": 27],
        ])
    }

    public static func secret(values: [String: String]) -> String {
        json([
            "kind": "Secret", "apiVersion": "v1",
            "metadata": [
                "name": "deckhouse-registry", "namespace": "d8-system", "uid": "0c5b3c55-4a1e-4e8e-8c77-6b1f7e0b8e21",
                "resourceVersion": "1203", "creationTimestamp": "2024-03-11T09:40:58Z",
                "labels": ["heritage": "deckhouse", "module": "deckhouse"],
            ],
            "data": values.mapValues { Data($0.utf8).base64EncodedString() },
            "type": "kubernetes.io/dockerconfigjson",
        ])
    }

    public static func moduleConfig(edition: String?) -> String {
        var settings: [String: Any] = ["bundle": "Default", "releaseChannel": "Stable", "logLevel": "Info"]
        if let edition { settings["license"] = ["edition": edition] }
        return json([
            "apiVersion": "deckhouse.io/v1alpha1", "kind": "ModuleConfig",
            "metadata": ["name": "deckhouse", "uid": "f3b0a8e2-1c1e-4f0e-9a39-2b8c6d3f5e77", "resourceVersion": "48100021",
                         "generation": 3, "creationTimestamp": "2024-03-11T09:41:02Z"],
            "spec": ["version": 1, "enabled": true, "settings": settings],
            "status": ["message": "", "version": "1"],
        ])
    }

    static func json(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A fake Kubernetes API server over plain HTTP (a `TestHTTPServer`): it answers the
/// three objects detection reads when the request carries the expected bearer token (or
/// basic credentials), and a 401 `Status` otherwise, as kube-apiserver does.
public final class FakeKubernetes: Sendable {
    public let server: TestHTTPServer
    public let basic: (username: String, password: String)?
    private let objects: TSLocked<FakeClusterObjects>
    private let acceptedToken: TSLocked<String?>

    private init(server: TestHTTPServer, acceptedToken: TSLocked<String?>, basic: (username: String, password: String)?,
                 objects: TSLocked<FakeClusterObjects>) {
        self.server = server
        self.acceptedToken = acceptedToken
        self.basic = basic
        self.objects = objects
    }

    /// The bearer token accepted now.
    public var token: String? { acceptedToken.current }

    /// Starts the fake API. Exactly the given `token` (or `basic` user) is accepted.
    public static func start(objects: FakeClusterObjects = FakeClusterObjects(), token: String? = "fake-token-7f3a",
                             basic: (username: String, password: String)? = nil) async throws -> FakeKubernetes {
        let state = TSLocked(objects)
        let accepted = TSLocked(token)
        let basicAuthorization = basic.map { "Basic " + Data("\($0.username):\($0.password)".utf8).base64EncodedString() }
        let server = try await TestHTTPServer.start { request in
            guard request.method == "GET" else {
                return .json(FakeClusterObjects.status(code: 405, reason: "MethodNotAllowed", message: "only GET here"), status: 405)
            }
            let expected = [accepted.current.map { "Bearer \($0)" }, basicAuthorization].compactMap { $0 }
            guard let authorization = request.header("Authorization"), expected.contains(authorization) else {
                return .json(FakeClusterObjects.status(code: 401, reason: "Unauthorized", message: "Unauthorized"), status: 401)
            }
            let answer = state.current.answer(path: request.path)
            return .json(answer.body, status: answer.status)
        }
        return FakeKubernetes(server: server, acceptedToken: accepted, basic: basic, objects: state)
    }

    /// From now on only `token` is accepted (the one before is refused, as a revoked or expired one is).
    public func accept(token: String) {
        acceptedToken.withLock { $0 = token }
    }

    /// `http://127.0.0.1:PORT`.
    public var url: String { "http://\(server.host)" }

    public var requests: [TestHTTPRequest] { server.requests }

    /// Changes the objects served from now on.
    public func update(_ change: @Sendable (inout FakeClusterObjects) -> Void) {
        objects.withLock { change(&$0) }
    }

    public func shutdown() async throws {
        try await server.shutdown()
    }
}

/// Certificates made with the `openssl` CLI for TLS tests: a CA, a server certificate for
/// 127.0.0.1 and localhost, and a client certificate (CN=admin, O=system:masters), all
/// signed by the CA; plus an unrelated CA that trusts nothing here.
public struct FakeKubernetesCertificates: Sendable {
    public let directory: URL
    public var caFile: String { directory.appendingPathComponent("ca.pem").path }
    public var serverCertificateFile: String { directory.appendingPathComponent("server.pem").path }
    public var serverKeyFile: String { directory.appendingPathComponent("server.key").path }
    public var clientCertificateFile: String { directory.appendingPathComponent("client.pem").path }
    public var clientKeyFile: String { directory.appendingPathComponent("client.key").path }
    public var otherCAFile: String { directory.appendingPathComponent("other-ca.pem").path }

    public func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw TestSupportError("cannot read \(path)") }
        return Array(data)
    }

    public static func make(in directory: URL) async throws -> FakeKubernetesCertificates {
        let dir = directory.path
        func run(_ arguments: [String]) async throws {
            let output = try await TestProcess.run("openssl", arguments, currentDirectory: directory)
            guard output.succeeded else {
                throw TestSupportError("openssl \(arguments.first ?? "") failed: \(output.stderrString)")
            }
        }
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
            .write(toFile: dir + "/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: dir + "/client.ext", atomically: true, encoding: .utf8)
        for ca in ["ca", "other-ca"] {
            try await run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(ca).key", "-out", "\(ca).pem",
                           "-days", "2", "-subj", "/CN=fake-kubernetes-\(ca)"])
        }
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/O=system:masters/CN=admin")] {
            try await run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", subject])
            try await run(["x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                           "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext"])
        }
        return FakeKubernetesCertificates(directory: directory)
    }
}

/// A fake Kubernetes API over HTTPS that requires a client certificate signed by its CA:
/// `openssl s_server -WWW -Verify 1` serving the objects as files (openssl is already a
/// test dependency; no TLS terminator package is needed). It checks the client certificate
/// during the handshake, not tokens; use `FakeKubernetes` for token tests.
public final class FakeKubernetesTLS: Sendable {
    public let certificates: FakeKubernetesCertificates
    public let port: Int
    private let directory: URL
    private let pid: Int32

    private init(certificates: FakeKubernetesCertificates, port: Int, directory: URL, pid: Int32) {
        self.certificates = certificates
        self.port = port
        self.directory = directory
        self.pid = pid
    }

    /// `https://127.0.0.1:PORT`.
    public var url: String { "https://127.0.0.1:\(port)" }

    public static func start(objects: FakeClusterObjects = FakeClusterObjects()) async throws -> FakeKubernetesTLS {
        let directory = try TestRegistry.temporaryDirectory("dkp-fake-kube")
        do {
            let certificates = try await FakeKubernetesCertificates.make(in: directory)
            let www = directory.appendingPathComponent("www")
            for path in [FakeClusterObjects.deploymentPath, FakeClusterObjects.secretPath, FakeClusterObjects.moduleConfigPath]
                + objects.extraObjects.keys.sorted() {
                let answer = objects.answer(path: path)
                guard answer.status == 200 else { continue }
                let file = www.appendingPathComponent(String(path.dropFirst()))
                try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
                try answer.body.write(to: file, atomically: true, encoding: .utf8)
            }
            for _ in 0..<10 {
                let port = Int.random(in: 20000..<60000)
                if let pid = try await launch(port: port, certificates: certificates, www: www, log: directory.appendingPathComponent("s_server.log")) {
                    return FakeKubernetesTLS(certificates: certificates, port: port, directory: directory, pid: pid)
                }
            }
            throw TestSupportError("openssl s_server did not start: \((try? String(contentsOf: directory.appendingPathComponent("s_server.log"), encoding: .utf8)) ?? "")")
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    /// Serves `body` at `path` from now on (s_server -WWW reads the file on each request).
    public func serve(path: String, body: String) throws {
        let file = directory.appendingPathComponent("www").appendingPathComponent(String(path.dropFirst()))
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try body.write(to: file, atomically: true, encoding: .utf8)
    }

    /// Starts s_server on `port`; its pid once it accepts, nil if it exited (port taken).
    private static func launch(port: Int, certificates: FakeKubernetesCertificates, www: URL, log: URL) async throws -> Int32? {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "s_server", "-accept", "127.0.0.1:\(port)",
                             "-cert", certificates.serverCertificateFile, "-key", certificates.serverKeyFile,
                             "-CAfile", certificates.caFile, "-Verify", "1", "-WWW"]
        process.currentDirectoryURL = www
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        // Should this test process die without stopping the server, a watcher ends it.
        let watcher = Process()
        watcher.executableURL = URL(fileURLWithPath: "/bin/sh")
        watcher.arguments = ["-c", "while kill -0 \(getpid()) 2>/dev/null && kill -0 \(pid) 2>/dev/null; do sleep 1; done; kill -KILL \(pid) 2>/dev/null; exit 0"]
        watcher.standardInput = FileHandle.nullDevice
        watcher.standardOutput = FileHandle.nullDevice
        watcher.standardError = FileHandle.nullDevice
        try? watcher.run()
        for _ in 0..<100 {
            try await Task.sleep(for: .milliseconds(50))
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if text.contains("ACCEPT") { return pid }
            if !process.isRunning { return nil }
        }
        _ = posixKill(pid, SIGKILL)
        process.waitUntilExit()
        return nil
    }

    /// Stops the server and removes its files.
    public func stop() {
        // Only the s_server started here: its command line names this server's files.
        let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
            .map { String(decoding: $0.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self) } ?? ""
        if TestRegistry.isAlive(pid), cmdline.contains(directory.path) {
            // SIGKILL: the child inherits this process's blocked signals, SIGTERM among them.
            _ = posixKill(pid, SIGKILL)
            _ = TestRegistry.waitGone(pid, seconds: 5)
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit {
        stop()
    }
}
