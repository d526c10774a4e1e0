import CCrypto
import Foundation

/// A bearer-token server for distribution's `auth: token`, on a `TestHTTPServer`.
///
/// `GET /token?service=SERVICE&scope=repository:NAME:ACTIONS[&scope=...]` with
/// `Authorization: Basic` (checked against `users`) answers
/// `{"token": JWT, "expires_in": N, "issued_at": RFC3339}`. Authenticated users get every
/// action they ask for; anonymous callers get only `pull` when `anonymousPull`, else 401.
/// JWTs are RS256, signed with a fresh RSA-2048 key whose self-signed certificate
/// (`certFile`) is both in the JWT's `x5c` header and the registry's `rootcertbundle`.
public final class TokenIssuer: Sendable {
    /// Which field(s) of the token response carry the JWT.
    public enum TokenField: Sendable {
        case token
        case accessToken
        case both
    }

    /// The underlying HTTP server (its `requests` holds every token request).
    public let server: TestHTTPServer
    /// `http://127.0.0.1:PORT/token`.
    public let realm: String
    /// `dkp-test-registry`.
    public let service: String
    /// `dkp-test-issuer`.
    public let issuer: String
    /// PEM certificate of the signing key: the registry's `rootcertbundle`.
    public let certFile: String
    /// PEM private key (RSA-2048) that signs the tokens.
    public let keyFile: String
    public let users: [String: String]
    public let anonymousPull: Bool
    public let tokenField: TokenField
    public let expiresIn: Int

    private let directory: URL
    private let state: IssuerState

    private init(
        server: TestHTTPServer, directory: URL, certFile: String, keyFile: String,
        users: [String: String], anonymousPull: Bool, tokenField: TokenField, expiresIn: Int,
        state: IssuerState
    ) {
        self.server = server
        self.directory = directory
        self.realm = "http://127.0.0.1:\(server.port)/token"
        self.service = state.service
        self.issuer = state.issuer
        self.certFile = certFile
        self.keyFile = keyFile
        self.users = users
        self.anonymousPull = anonymousPull
        self.tokenField = tokenField
        self.expiresIn = expiresIn
        self.state = state
    }

    /// `readOnlyUsers` authenticate but are granted `pull` only (a registry's read-only user).
    public static func start(
        users: [String: String], anonymousPull: Bool = false, tokenField: TokenField = .token,
        expiresIn: Int = 300, readOnlyUsers: Set<String> = []
    ) async throws -> TokenIssuer {
        let service = "dkp-test-registry"
        let issuer = "dkp-test-issuer"
        let dir = try TestRegistry.temporaryDirectory("dkp-token")
        let keyFile = dir.appendingPathComponent("issuer.key").path
        let certFile = dir.appendingPathComponent("issuer.pem").path
        do {
            let result = try await TestProcess.run(
                "openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out",
                    certFile, "-days", "30", "-subj", "/CN=\(issuer)", "-sha256",
                ])
            guard result.succeeded else {
                throw TestSupportError("openssl failed: \(result.stderrString)")
            }
            let signer = try RSASigner(pemFile: keyFile)
            let x5c = try Self.derBase64(ofPEMFile: certFile)
            let state = IssuerState(
                service: service, issuer: issuer, users: users, anonymousPull: anonymousPull,
                tokenField: tokenField, expiresIn: expiresIn, signer: signer, x5c: x5c)
            state.readOnlyUsers.withLock { $0 = readOnlyUsers }
            let server = try await TestHTTPServer.start { request in
                state.handle(request)
            }
            return TokenIssuer(
                server: server, directory: dir, certFile: certFile, keyFile: keyFile, users: users,
                anonymousPull: anonymousPull, tokenField: tokenField, expiresIn: expiresIn,
                state: state)
        } catch {
            try? FileManager.default.removeItem(at: dir)
            throw error
        }
    }

    /// Number of tokens handed out.
    public var tokensIssued: Int { state.counters.current.issued }

    /// The scopes asked for by each token request (answered or refused), in order.
    public var requestedScopes: [[String]] { state.counters.current.scopes }

    /// Number of token requests refused (bad credentials, anonymous without anonymousPull...).
    public var requestsRefused: Int { state.counters.current.refused }

    /// Every token handed out over HTTP, in order (tests check that none is ever printed).
    public var issuedTokens: [String] { state.counters.current.tokens }

    /// Makes a signed token directly, without HTTP (e.g. to test expiry or a foreign issuer).
    public func makeToken(
        subject: String, access: [(type: String, name: String, actions: [String])],
        expiresIn: Int? = nil, issuer: String? = nil, audience: String? = nil
    ) throws -> String {
        try state.makeJWT(
            subject: subject, access: access.map { Access(type: $0.type, name: $0.name, actions: $0.actions) },
            expiresIn: expiresIn ?? self.expiresIn, issuer: issuer ?? self.issuer,
            audience: audience ?? self.service)
    }

    public func shutdown() async throws {
        try await server.shutdown()
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }

    /// The base64 (standard alphabet, unwrapped) DER of the first certificate in a PEM file.
    static func derBase64(ofPEMFile path: String) throws -> String {
        let pem = try String(contentsOfFile: path, encoding: .utf8)
        var inside = false
        var body = ""
        for line in pem.split(whereSeparator: \.isNewline) {
            if line.hasPrefix("-----BEGIN CERTIFICATE-----") {
                inside = true
            } else if line.hasPrefix("-----END CERTIFICATE-----") {
                break
            } else if inside {
                body += line.trimmingCharacters(in: .whitespaces)
            }
        }
        guard !body.isEmpty, Data(base64Encoded: body) != nil else {
            throw TestSupportError("no certificate in \(path)")
        }
        return body
    }
}

struct Access: Encodable, Sendable {
    var type: String
    var name: String
    var actions: [String]
}

private struct JWTHeader: Encodable {
    var typ = "JWT"
    var alg = "RS256"
    var x5c: [String]
}

private struct Claims: Encodable {
    var iss: String
    var sub: String
    var aud: String
    var exp: Int64
    var nbf: Int64
    var iat: Int64
    var jti: String
    var access: [Access]
}

private struct TokenResponse: Encodable {
    var token: String?
    var access_token: String?
    var expires_in: Int
    var issued_at: String
}

final class IssuerState: Sendable {
    struct Counters {
        var issued = 0
        var refused = 0
        var scopes: [[String]] = []
        var tokens: [String] = []
    }

    let service: String
    let issuer: String
    let users: [String: String]
    let anonymousPull: Bool
    let tokenField: TokenIssuer.TokenField
    let expiresIn: Int
    let signer: RSASigner
    let x5c: String
    let counters = TSLocked(Counters())
    let readOnlyUsers = TSLocked(Set<String>())

    init(
        service: String, issuer: String, users: [String: String], anonymousPull: Bool,
        tokenField: TokenIssuer.TokenField, expiresIn: Int, signer: RSASigner, x5c: String
    ) {
        self.service = service
        self.issuer = issuer
        self.users = users
        self.anonymousPull = anonymousPull
        self.tokenField = tokenField
        self.expiresIn = expiresIn
        self.signer = signer
        self.x5c = x5c
    }

    func handle(_ request: TestHTTPRequest) -> TestHTTPResponse {
        guard request.path == "/token" else { return .notFound() }
        guard request.method == "GET" else {
            return .json(#"{"errors":[{"code":"UNSUPPORTED","message":"only GET is supported"}]}"#, status: 404)
        }
        // Scopes may repeat, and one parameter may carry several, space-separated.
        let scopes = request.queryValues("scope").flatMap { $0.split(separator: " ").map(String.init) }
        counters.withLock { $0.scopes.append(scopes) }

        if let asked = request.query("service"), asked != service {
            return refuse(status: 400, code: "DENIED", message: "unknown service \(asked)")
        }

        let subject: String
        let anonymous: Bool
        if let authorization = request.header("Authorization") {
            guard let (user, password) = Self.basicCredentials(authorization),
                let expected = users[user], expected == password
            else {
                return refuse(status: 401, code: "UNAUTHORIZED", message: "authentication failed")
            }
            subject = user
            anonymous = false
        } else {
            guard anonymousPull else {
                return refuse(status: 401, code: "UNAUTHORIZED", message: "authentication required")
            }
            subject = ""
            anonymous = true
        }

        var access: [Access] = []
        for scope in scopes {
            guard let parsed = Self.parseScope(scope) else { continue }
            let pullOnly = anonymous || readOnlyUsers.withLock { $0.contains(subject) }
            let granted = pullOnly ? parsed.actions.filter { $0 == "pull" } : parsed.actions
            if granted.isEmpty { continue }
            access.append(Access(type: parsed.type, name: parsed.name, actions: granted))
        }

        let jwt: String
        do {
            jwt = try makeJWT(
                subject: subject, access: access, expiresIn: expiresIn, issuer: issuer, audience: service)
        } catch {
            return refuse(status: 500, code: "UNKNOWN", message: "signing failed: \(error)")
        }
        var body = TokenResponse(
            token: nil, access_token: nil, expires_in: expiresIn,
            issued_at: Self.rfc3339(Date()))
        switch tokenField {
        case .token: body.token = jwt
        case .accessToken: body.access_token = jwt
        case .both:
            body.token = jwt
            body.access_token = jwt
        }
        guard let json = try? Self.encoder().encode(body) else {
            return refuse(status: 500, code: "UNKNOWN", message: "encoding failed")
        }
        counters.withLock {
            $0.issued += 1
            $0.tokens.append(jwt)
        }
        return TestHTTPResponse(
            status: 200, headers: [("Content-Type", "application/json")], body: Array(json))
    }

    func makeJWT(
        subject: String, access: [Access], expiresIn: Int, issuer: String, audience: String
    ) throws -> String {
        let now = Int64(Date().timeIntervalSince1970)
        let header = JWTHeader(x5c: [x5c])
        let claims = Claims(
            iss: issuer, sub: subject, aud: audience, exp: now + Int64(expiresIn), nbf: now - 10,
            iat: now, jti: UUID().uuidString, access: access)
        let encoder = Self.encoder()
        let signingInput =
            TestCrypto.base64URL(Array(try encoder.encode(header))) + "."
            + TestCrypto.base64URL(Array(try encoder.encode(claims)))
        let signature = try signer.sign(Array(signingInput.utf8))
        return signingInput + "." + TestCrypto.base64URL(signature)
    }

    private func refuse(status: Int, code: String, message: String) -> TestHTTPResponse {
        counters.withLock { $0.refused += 1 }
        let escaped = message.replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "\"", with: "\\\"")
        var headers: [(String, String)] = []
        if status == 401 {
            headers.append(("WWW-Authenticate", "Basic realm=\"\(issuer)\""))
        }
        return .json(
            #"{"errors":[{"code":"\#(code)","message":"\#(escaped)"}]}"#, status: status,
            headers: headers)
    }

    private static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    static func basicCredentials(_ header: String) -> (String, String)? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
            let text = String(data: data, encoding: .utf8),
            let colon = text.firstIndex(of: ":")
        else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    /// `type:name:actions`, where name may itself hold colons (`host:port/repo`).
    static func parseScope(_ scope: String) -> (type: String, name: String, actions: [String])? {
        guard let first = scope.firstIndex(of: ":"), let last = scope.lastIndex(of: ":"), first < last
        else { return nil }
        let type = String(scope[..<first])
        let name = String(scope[scope.index(after: first)..<last])
        let actions = scope[scope.index(after: last)...].split(separator: ",").map(String.init)
        return (type, name, actions)
    }

    static func rfc3339(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}

/// RS256 signing with libcrypto.
final class RSASigner: @unchecked Sendable {
    // EVP_PKEY is only read after init; the lock keeps libcrypto calls on it serial anyway.
    private let key: OpaquePointer
    private let lock = NSLock()

    init(pemFile: String) throws {
        let pem = try Data(contentsOf: URL(fileURLWithPath: pemFile))
        let key: OpaquePointer? = pem.withUnsafeBytes { raw -> OpaquePointer? in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let key else {
            throw TestSupportError("cannot read the private key in \(pemFile): \(Self.opensslError())")
        }
        self.key = key
    }

    deinit {
        EVP_PKEY_free(key)
    }

    func sign(_ message: [UInt8]) throws -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        guard let ctx = EVP_MD_CTX_new() else { throw TestSupportError("EVP_MD_CTX_new failed") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, EVP_sha256(), nil, key) == 1 else {
            throw TestSupportError("EVP_DigestSignInit: \(Self.opensslError())")
        }
        var length = 0
        let sized = message.withUnsafeBufferPointer { msg in
            EVP_DigestSign(ctx, nil, &length, msg.baseAddress, msg.count)
        }
        guard sized == 1, length > 0 else {
            throw TestSupportError("EVP_DigestSign (size): \(Self.opensslError())")
        }
        var signature = [UInt8](repeating: 0, count: length)
        let signed = message.withUnsafeBufferPointer { msg in
            signature.withUnsafeMutableBufferPointer { sig in
                EVP_DigestSign(ctx, sig.baseAddress, &length, msg.baseAddress, msg.count)
            }
        }
        guard signed == 1 else {
            throw TestSupportError("EVP_DigestSign: \(Self.opensslError())")
        }
        return Array(signature.prefix(length))
    }

    static func opensslError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "unknown error" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
