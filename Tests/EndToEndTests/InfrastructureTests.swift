import Foundation
import Testing
import TestSupport

/// Checks the test infrastructure itself (real registries from scripts/registry.sh, the
/// token issuer, the fault proxy, the HTTP server) with `curl`, independently of the
/// code under test.
@Suite struct InfrastructureTests {
    @Test func plainRegistryAnswersV2() async throws {
        let registry = try await TestRegistry.start()
        #expect(registry.host == "127.0.0.1:\(registry.port)")
        #expect(registry.url.absoluteString == "http://127.0.0.1:\(registry.port)")
        #expect(registry.caFile == nil)
        #expect(registry.isRunning)
        let result = try await Curl.get("\(registry.url.absoluteString)/v2/")
        #expect(result.exitCode == 0)
        #expect(result.status == 200)
        #expect(result.header("Docker-Distribution-Api-Version") == "registry/2.0")
        #expect(result.header("X-Content-Type-Options") == "nosniff")
    }

    @Test func tlsRegistryWithHtpasswd() async throws {
        let registry = try await TestRegistry.start(tls: true, users: ["alice": "s3cret", "bob": "hunter2"])
        let ca = try #require(registry.caFile)
        let v2 = "\(registry.url.absoluteString)/v2/"
        #expect(v2.hasPrefix("https://127.0.0.1:"))

        let anonymous = try await Curl.get(v2, ["--cacert", ca])
        #expect(anonymous.status == 401)
        #expect(anonymous.header("WWW-Authenticate")?.hasPrefix("Basic realm=") == true)

        let alice = try await Curl.get(v2, ["--cacert", ca, "-u", "alice:s3cret"])
        #expect(alice.status == 200)
        let bob = try await Curl.get("https://localhost:\(registry.port)/v2/", ["--cacert", ca, "-u", "bob:hunter2"])
        #expect(bob.status == 200)
        let wrong = try await Curl.get(v2, ["--cacert", ca, "-u", "alice:nope"])
        #expect(wrong.status == 401)

        // Without the CA, the certificate must not verify (curl: 60).
        let untrusted = try await Curl.get(v2)
        #expect(untrusted.exitCode == 60)
    }

    @Test func tokenRegistryAcceptsIssuedTokens() async throws {
        let issuer = try await TokenIssuer.start(users: ["carol": "pa55"])
        let registry = try await TestRegistry.start(token: issuer)
        let base = registry.url.absoluteString

        let challenge = try await Curl.get("\(base)/v2/")
        #expect(challenge.status == 401)
        let wwwAuthenticate = try #require(challenge.header("WWW-Authenticate"))
        #expect(wwwAuthenticate.hasPrefix("Bearer realm=\"\(issuer.realm)\""))
        #expect(wwwAuthenticate.contains("service=\"\(issuer.service)\""))

        // Wrong credentials and no credentials are refused by the issuer.
        let tokenURL = "\(issuer.realm)?service=\(issuer.service)&scope=repository:r:pull,push"
        #expect(try await Curl.get(tokenURL, ["-u", "carol:wrong"]).status == 401)
        #expect(try await Curl.get(tokenURL).status == 401)
        #expect(try await Curl.get(tokenURL, ["-u", "mallory:pa55"]).status == 401)
        #expect(issuer.tokensIssued == 0)

        let tokenResponse = try await Curl.get(tokenURL, ["-u", "carol:pa55"])
        #expect(tokenResponse.status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(tokenResponse.body)) as? [String: Any])
        let token = try #require(json["token"] as? String)
        #expect(json["access_token"] == nil)
        #expect(json["expires_in"] as? Int == 300)
        #expect((json["issued_at"] as? String)?.hasSuffix("Z") == true)
        #expect(token.split(separator: ".").count == 3)
        #expect(issuer.tokensIssued == 1)
        #expect(issuer.requestedScopes.last == ["repository:r:pull,push"])

        let bearer = ["-H", "Authorization: Bearer \(token)"]
        #expect(try await Curl.get("\(base)/v2/", bearer).status == 200)

        let blob = Array("hello from the token test\n".utf8)
        let digest = try await Curl.pushBlob(blob, repository: "r", registry: base, extra: bearer)
        let fetched = try await Curl.get("\(base)/v2/r/blobs/\(digest)", bearer)
        #expect(fetched.status == 200)
        #expect(fetched.body.count == blob.count)
        #expect(TestCrypto.sha256Hex(fetched.body) == TestCrypto.sha256Hex(blob))

        // The token only covers repository r.
        #expect(try await Curl.get("\(base)/v2/other/blobs/\(digest)", bearer).status == 401)

        // A login without scope works too.
        let login = try await Curl.get("\(issuer.realm)?service=\(issuer.service)", ["-u", "carol:pa55"])
        #expect(login.status == 200)
        #expect(issuer.requestedScopes.last == [])

        // Tokens made directly: expired ones and foreign issuers are rejected.
        let expired = try issuer.makeToken(
            subject: "carol", access: [(type: "repository", name: "r", actions: ["pull"])], expiresIn: -600)
        #expect(try await Curl.get("\(base)/v2/", ["-H", "Authorization: Bearer \(expired)"]).status == 401)
        let foreign = try issuer.makeToken(subject: "carol", access: [], issuer: "someone-else")
        #expect(try await Curl.get("\(base)/v2/", ["-H", "Authorization: Bearer \(foreign)"]).status == 401)
    }

    @Test func anonymousPullTokensOnlyPull() async throws {
        let issuer = try await TokenIssuer.start(users: ["dave": "pw"], anonymousPull: true, tokenField: .both, expiresIn: 60)
        let registry = try await TestRegistry.start(token: issuer)
        let base = registry.url.absoluteString

        // Push something with a real user first.
        let pushToken = try await Curl.token(issuer, scopes: ["repository:lib/app:pull,push"], credentials: "dave:pw")
        let blob = TestCrypto.randomBytes(4096)
        let digest = try await Curl.pushBlob(blob, repository: "lib/app", registry: base, extra: ["-H", "Authorization: Bearer \(pushToken)"])

        // Anonymous: a token with pull only, in both fields.
        let anonymous = try await Curl.get("\(issuer.realm)?service=\(issuer.service)&scope=repository:lib/app:pull,push")
        #expect(anonymous.status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(anonymous.body)) as? [String: Any])
        let token = try #require(json["token"] as? String)
        #expect(json["access_token"] as? String == token)
        #expect(json["expires_in"] as? Int == 60)
        let bearer = ["-H", "Authorization: Bearer \(token)"]
        let pulled = try await Curl.get("\(base)/v2/lib/app/blobs/\(digest)", bearer)
        #expect(pulled.status == 200)
        #expect(pulled.body.count == blob.count)
        #expect(TestCrypto.sha256Hex(pulled.body) == TestCrypto.sha256Hex(blob))
        let upload = try await Curl.get("\(base)/v2/lib/app/blobs/uploads/", ["-X", "POST"] + bearer)
        #expect(upload.status == 401)
        #expect(issuer.requestedScopes.count == 2)
    }

    @Test func faultProxyForwardsAndCuts() async throws {
        let registry = try await TestRegistry.start()
        let blob = TestCrypto.randomBytes(1 << 20)
        let digest = try await Curl.pushBlob(blob, repository: "proxied", registry: registry.url.absoluteString)

        let proxy = try await FaultProxy.start(upstream: registry)
        #expect(proxy.host == "127.0.0.1:\(proxy.port)")
        let blobURL = "http://\(proxy.host)/v2/proxied/blobs/\(digest)"

        let v2 = try await Curl.get("http://\(proxy.host)/v2/")
        #expect(v2.status == 200)
        let whole = try await Curl.get(blobURL)
        #expect(whole.status == 200)
        #expect(whole.body.count == blob.count)
        #expect(TestCrypto.sha256Hex(whole.body) == TestCrypto.sha256Hex(blob))
        #expect(proxy.connectionsAccepted == 2)
        #expect(proxy.bytesToClient > blob.count)
        #expect(proxy.bytesFromClient > 0)

        proxy.fault = .cutAfter(bytes: 100_000, connections: 1)
        let cut = try await Curl.get(blobURL)
        #expect(cut.exitCode != 0)  // curl: 18, partial transfer
        #expect(cut.body.count < blob.count)
        #expect(cut.body.count <= 100_000)
        #expect(proxy.cutsPerformed == 1)

        // Only one connection was to be cut.
        let again = try await Curl.get(blobURL)
        #expect(again.status == 200)
        #expect(again.body.count == blob.count)
        #expect(TestCrypto.sha256Hex(again.body) == TestCrypto.sha256Hex(blob))
        #expect(proxy.cutsPerformed == 1)

        // Uploads pass through too (client→upstream direction).
        proxy.fault = .none
        let big = TestCrypto.randomBytes(8 << 20)
        let bigDigest = try await Curl.pushBlob(big, repository: "proxied", registry: "http://\(proxy.host)")
        let bigBack = try await Curl.get("\(registry.url.absoluteString)/v2/proxied/blobs/\(bigDigest)")
        #expect(bigBack.body.count == big.count)
        #expect(TestCrypto.sha256Hex(bigBack.body) == TestCrypto.sha256Hex(big))
        #expect(proxy.bytesFromClient > big.count)
        try await proxy.shutdown()
    }

    @Test func faultProxyStalls() async throws {
        let registry = try await TestRegistry.start()
        let blob = TestCrypto.randomBytes(256 << 10)
        let digest = try await Curl.pushBlob(blob, repository: "stall", registry: registry.url.absoluteString)
        let proxy = try await FaultProxy.start(upstream: registry, fault: .stall(afterBytes: 1000))
        // curl's own timer ends the stalled transfer; 5 s leaves a loaded machine (the suite
        // runs in parallel on two cores) time to relay the first 1000 bytes before it fires.
        let stalled = try await Curl.get("http://\(proxy.host)/v2/stall/blobs/\(digest)", ["--max-time", "5"])
        #expect(stalled.exitCode == 28)  // curl: operation timed out
        #expect(stalled.body.count < 1000)  // the response head takes part of the 1000 bytes
        #expect(proxy.stallsPerformed == 1)

        proxy.fault = .none
        let fine = try await Curl.get("http://\(proxy.host)/v2/stall/blobs/\(digest)")
        #expect(fine.exitCode == 0, "curl: \(fine.stderr)")
        #expect(fine.body.count == blob.count)
        #expect(TestCrypto.sha256Hex(fine.body) == TestCrypto.sha256Hex(blob))
    }

    @Test func restartKeepsDataAndPort() async throws {
        let registry = try await TestRegistry.start()
        let blob = TestCrypto.randomBytes(10_000)
        let digest = try await Curl.pushBlob(blob, repository: "keep/me", registry: registry.url.absoluteString)
        let pidBefore = try #require(registry.pid)

        try await registry.restart()
        let pidAfter = try #require(registry.pid)
        #expect(pidAfter != pidBefore)
        let fetched = try await Curl.get("\(registry.url.absoluteString)/v2/keep/me/blobs/\(digest)")
        #expect(fetched.status == 200)
        #expect(fetched.body.count == blob.count)
        #expect(TestCrypto.sha256Hex(fetched.body) == TestCrypto.sha256Hex(blob))

        // stop() really stops; restart() brings it back.
        registry.stop()
        #expect(!registry.isRunning)
        #expect(try await Curl.get("\(registry.url.absoluteString)/v2/").exitCode == 7)  // connection refused
        try await registry.restart()
        let again = try await Curl.get("\(registry.url.absoluteString)/v2/keep/me/blobs/\(digest)")
        #expect(again.body.count == blob.count)
        #expect(TestCrypto.sha256Hex(again.body) == TestCrypto.sha256Hex(blob))

        // A crash (SIGKILL) is survivable too.
        registry.kill()
        #expect(!registry.isRunning)
        try await registry.restart()
        let afterCrash = try await Curl.get("\(registry.url.absoluteString)/v2/keep/me/blobs/\(digest)")
        #expect(afterCrash.status == 200)
        #expect(TestCrypto.sha256Hex(afterCrash.body) == TestCrypto.sha256Hex(blob))
    }

    @Test func releasingARegistryStopsIt() async throws {
        var registry: TestRegistry? = try await TestRegistry.start()
        let pid = try #require(registry?.pid)
        let directory = try #require(registry?.directory)
        registry = nil
        // The teardown runs on a thread of its own (Blocking.teardown): give it a moment.
        for _ in 0..<500 where (kill(pid, 0) == 0 && !isZombie(pid)) || FileManager.default.fileExists(atPath: directory.path) {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(kill(pid, 0) != 0 || isZombie(pid))
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test func httpServerRecordsRequests() async throws {
        let server = try await TestHTTPServer.start { request in
            if request.path == "/echo" {
                return TestHTTPResponse(status: 201, headers: [("X-Method", request.method)], body: request.body)
            }
            return .json(#"{"path":"\#(request.path)"}"#)
        }
        let base = server.baseURL.absoluteString
        // Two requests over one connection (keep-alive).
        let both = try await TestProcess.run(
            "curl",
            ["-sS", "--noproxy", "*", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\\n",
             "\(base)/a?x=1&x=2&y=hello+world%21", "\(base)/b"])
        #expect(both.succeeded)
        #expect(both.stdoutString == "1\n0\n")

        // A body big enough for curl to send Expect: 100-continue.
        let payload = TestCrypto.randomBytes(200_000)
        let echoed = try await Curl.get("\(base)/echo", ["-X", "POST", "-H", "Content-Type: application/octet-stream"], body: payload)
        #expect(echoed.status == 201)
        #expect(echoed.header("X-Method") == "POST")
        #expect(echoed.body.count == payload.count)
        #expect(TestCrypto.sha256Hex(echoed.body) == TestCrypto.sha256Hex(payload))

        let requests = server.requests
        #expect(requests.count == 3)
        #expect(requests[0].path == "/a")
        #expect(requests[0].queryValues("x") == ["1", "2"])
        #expect(requests[0].query("y") == "hello world!")
        #expect(requests[1].uri == "/b")
        #expect(requests[2].method == "POST")
        #expect(requests[2].body.count == payload.count)
        #expect(TestCrypto.sha256Hex(requests[2].body) == TestCrypto.sha256Hex(payload))
        #expect(requests[2].header("content-type") == "application/octet-stream")
        try await server.shutdown()
    }
}

private func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return false }
    return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
}

/// curl, run as a subprocess.
private enum Curl {
    struct Result {
        var exitCode: Int32
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        var stderr: String

        func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }
    }

    /// Runs curl on `url` with `extra` options (`-X` for the method); `body` is sent with
    /// --data-binary. Status 0 when no response arrived.
    static func get(_ url: String, _ extra: [String] = [], body: [UInt8]? = nil) async throws -> Result {
        let dir = try TestRegistry.temporaryDirectory("dkp-curl")
        defer { try? FileManager.default.removeItem(at: dir) }
        let headerFile = dir.appendingPathComponent("headers").path
        let bodyFile = dir.appendingPathComponent("body").path
        var args = ["-sS", "--noproxy", "*", "--max-time", "20", "-D", headerFile, "-o", bodyFile, "-w", "%{http_code}"]
        if let body {
            let input = dir.appendingPathComponent("input")
            try Data(body).write(to: input)
            args += ["--data-binary", "@\(input.path)"]
        }
        let output = try await TestProcess.run("curl", args + extra + [url])
        let headerText = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
        // Keep the last header block (after any 100 Continue).
        let blocks = headerText.components(separatedBy: "\r\n\r\n").filter { $0.hasPrefix("HTTP/") }
        var headers: [(String, String)] = []
        for line in (blocks.last ?? "").components(separatedBy: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let responseBody = (try? Data(contentsOf: URL(fileURLWithPath: bodyFile))).map { Array($0) } ?? []
        return Result(
            exitCode: output.status, status: Int(output.stdoutString) ?? 0, headers: headers,
            body: responseBody, stderr: output.stderrString)
    }

    /// Monolithic-ish blob upload: POST /v2/REPO/blobs/uploads/ then PUT LOCATION&digest=.
    /// Returns the digest.
    static func pushBlob(_ blob: [UInt8], repository: String, registry: String, extra: [String] = []) async throws -> String {
        let digest = TestCrypto.sha256Digest(blob)
        let start = try await get("\(registry)/v2/\(repository)/blobs/uploads/", ["-X", "POST"] + extra)
        #expect(start.status == 202, "POST upload: \(start.status) \(String(decoding: start.body, as: UTF8.self))")
        var location = try #require(start.header("Location"))
        if location.hasPrefix("/") { location = registry + location }
        location += (location.contains("?") ? "&" : "?") + "digest=\(digest)"
        let put = try await get(location, ["-X", "PUT", "-H", "Content-Type: application/octet-stream"] + extra, body: blob)
        #expect(put.status == 201, "PUT upload: \(put.status) \(String(decoding: put.body, as: UTF8.self))")
        #expect(put.header("Docker-Content-Digest") == digest)
        return digest
    }

    /// A token from `issuer` for `scopes`, with `credentials` (`user:password`).
    static func token(_ issuer: TokenIssuer, scopes: [String], credentials: String) async throws -> String {
        let query = scopes.map { "&scope=\($0)" }.joined()
        let response = try await get("\(issuer.realm)?service=\(issuer.service)\(query)", ["-u", credentials])
        #expect(response.status == 200)
        let json = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        return try #require(json?["token"] as? String ?? json?["access_token"] as? String)
    }
}

/// This process's resident set size in bytes (Linux).
private func residentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let kib = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return kib * 1024
    }
    return 0
}

private final class PeakSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var peak = 0
    func record(_ value: Int) {
        lock.lock()
        peak = max(peak, value)
        lock.unlock()
    }
    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return peak
    }
}
