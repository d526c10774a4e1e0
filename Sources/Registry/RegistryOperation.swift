import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import OCI

/// One exchange of the distribution API as a value: the request, the statuses its caller
/// handles, and how to name it in errors. `Transport.execute` sends it, turns every other
/// status into a `RegistryError` (404 not found, 401, 403 with the user, the registry's own
/// message) and disposes of the body, so no call site drains a response or writes its own
/// status guard (the shape of swift-container-plugin's and containerization's clients).
struct RegistryOperation: Sendable {
    var request: RegistryRequest
    /// The statuses the caller handles (success, and absence where it asks, e.g. 404 on a HEAD).
    var expecting: Set<UInt>
    /// What the request is about, for errors: `manifest HOST/REPO:TAG`, `upload to HOST/REPO`.
    var what: String
    /// The repository and the action (`pull`, `push`, `list`, `access`) a 403 names.
    var repository: String
    var action: String

    init(_ method: HTTPMethod, _ url: String, headers: HTTPHeaders = [:], scopes: [Scope],
         body: (@Sendable () throws -> HTTPClientRequest.Body)? = nil, retryable: Bool = true,
         expecting: Set<UInt>, what: String, repository: String, action: String) {
        request = RegistryRequest(method: method, url: url, headers: headers, scopes: scopes, body: body, retryable: retryable)
        self.expecting = expecting
        self.what = what
        self.repository = repository
        self.action = action
    }
}

/// The status and headers of a response whose body `Transport` has dealt with.
struct RegistryResponse: Sendable {
    var status: UInt
    var headers: HTTPHeaders
    /// The URL the request went to (a relative `Location` resolves against it).
    var url: String

    init(_ response: HTTPClientResponse, url: String) {
        status = response.status.code
        headers = response.headers
        self.url = url
    }

    func header(_ name: String) -> String? { headers.first(name: name) }

    /// `Docker-Content-Digest`, when it is a sha256 digest.
    var contentDigest: Digest? {
        guard let value = header("Docker-Content-Digest"), value.hasPrefix("sha256:") else { return nil }
        return try? Digest(parsing: value)
    }

    var contentLength: Int64? { header("Content-Length").flatMap { Int64($0) } }

    /// `Location`, resolved against the request's URL.
    var location: String? { header("Location").flatMap { Transport.resolve($0, against: url) } }
}

extension Transport {
    /// Sends `operation` (with `send`'s retries of the response head) and returns its status
    /// and headers, the body read away; a status the operation does not expect throws.
    func execute(_ operation: RegistryOperation) async throws -> RegistryResponse {
        let response = try await send(operation.request)
        guard operation.expecting.contains(response.status.code) else {
            throw await unexpected(response, operation)
        }
        await Self.drain(response)
        return RegistryResponse(response, url: operation.request.url)
    }

    /// As `execute`, keeping a small body (at most `limit` bytes; `reading` names it in errors).
    /// A body that breaks off sends the request again (`retrying`).
    func execute(_ operation: RegistryOperation, collectingUpTo limit: Int,
                 reading: String? = nil) async throws -> (RegistryResponse, ByteBuffer) {
        let what = reading ?? operation.what
        return try await retrying(what) {
            let response = try await send(operation.request)
            guard operation.expecting.contains(response.status.code) else {
                throw await unexpected(response, operation)
            }
            return (RegistryResponse(response, url: operation.request.url), try await collect(response, upTo: limit, what: what))
        }
    }

    /// As `execute`, handing the body to the caller, who streams it (`BlobDownload`).
    func open(_ operation: RegistryOperation) async throws -> (RegistryResponse, HTTPClientResponse.Body) {
        let response = try await send(operation.request)
        guard operation.expecting.contains(response.status.code) else {
            throw await unexpected(response, operation)
        }
        return (RegistryResponse(response, url: operation.request.url), response.body)
    }

    /// The error for a status the operation did not expect, with the registry's own message.
    func unexpected(_ response: HTTPClientResponse, _ operation: RegistryOperation) async -> RegistryError {
        let detail = await Transport.errorDetail(of: response)
        switch response.status.code {
        case 404:
            return .notFound(what: operation.what, detail: detail)
        case 401 where !Transport.sameOrigin(operation.request.url, baseURL):
            // No credentials go to another origin: this 401 says the registry named the wrong address.
            return .unauthorized(host: host, user: configuration.credential?.username,
                                 detail: "it named \(Transport.redact(operation.request.url)) for \(operation.what), another origin than \(baseURL), "
                                     + "which answered 401; credentials are only sent to the registry's own address",
                                 hint: "have the registry name its own address in the URLs it returns (its external or base URL setting)")
        case 401:
            return await auth.finalUnauthorized(header: response.headers.first(name: "WWW-Authenticate"))
        case 403:
            return .forbidden(host: host, repository: operation.repository, action: operation.action,
                              user: configuration.credential?.username, detail: detail)
        case 400 where detail.contains("HTTPS server"):
            return .tlsFailure(host: host, detail: "the registry serves HTTPS", hint: "drop \(configuration.optionNames.insecure)")
        case 400 where operation.request.method == .HEAD && configuration.insecure:
            // An HTTPS server's answer to plain HTTP says so in its body, which a HEAD has none of.
            return .tlsFailure(host: host, detail: "400 to a plain-HTTP HEAD: the registry most likely serves HTTPS",
                               hint: "drop \(configuration.optionNames.insecure)")
        default:
            return .http(method: operation.request.method.rawValue, url: Transport.redact(operation.request.url),
                         status: Int(response.status.code), detail: detail)
        }
    }
}
