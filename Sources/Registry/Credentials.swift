import Foundation

/// A username and secret for one registry. The secret is never printed: `description`
/// and `debugDescription` show the username only.
public struct Credential: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    /// How registry.deckhouse.ru takes a license key: Basic `license-token:<key>`.
    public static func licenseKey(_ key: String) -> Credential {
        Credential(username: "license-token", password: key)
    }

    /// The value of a Basic `Authorization` header.
    public var basicAuthorization: String {
        "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
    }

    public var description: String { "Credential(\(username), ****)" }
    public var debugDescription: String { description }
}

/// Reads `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`): `auths` entries,
/// `credHelpers` and `credsStore` through `docker-credential-<name> get`.
public struct DockerConfig: Sendable {
    public let path: String

    public init(path: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let path {
            self.path = path
        } else if let dir = environment["DOCKER_CONFIG"], !dir.isEmpty {
            self.path = dir + "/config.json"
        } else {
            let home = environment["HOME"] ?? NSHomeDirectory()
            self.path = home + "/.docker/config.json"
        }
    }

    private struct File: Decodable {
        struct Auth: Decodable {
            var auth: String?
            var username: String?
            var password: String?
            var identitytoken: String?
        }
        var auths: [String: Auth]?
        var credHelpers: [String: String]?
        var credsStore: String?
    }

    /// The credential stored for `host` ("registry.example.com" or "127.0.0.1:5000"), or nil.
    /// A config file that exists but cannot be parsed is an error naming the file.
    public func credential(for host: String) throws -> Credential? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw RegistryError.invalidInput("cannot read docker config \(path): it is not valid JSON; fix or move it, or pass credentials with options")
        }
        if let helper = file.credHelpers?[host] {
            return try Self.runHelper(helper, host: host)
        }
        if let auths = file.auths {
            for key in Self.keyVariants(host) {
                guard let entry = auths[key] else { continue }
                if let decoded = entry.auth.flatMap({ Data(base64Encoded: $0) }).map({ String(decoding: $0, as: UTF8.self) }),
                   let colon = decoded.firstIndex(of: ":") {
                    return Credential(username: String(decoded[..<colon]), password: String(decoded[decoded.index(after: colon)...]))
                }
                if let username = entry.username, let password = entry.password {
                    return Credential(username: username, password: password)
                }
            }
        }
        if let store = file.credsStore, !store.isEmpty {
            return try Self.runHelper(store, host: host)
        }
        return nil
    }

    /// docker keys auths by "host", "https://host", "http://host" or a full URL.
    static func keyVariants(_ host: String) -> [String] {
        var keys = [host, "https://\(host)", "http://\(host)", "https://\(host)/v1/", "https://\(host)/v2/"]
        if host == "docker.io" || host == "registry-1.docker.io" { keys.append("https://index.docker.io/v1/") }
        return keys
    }

    /// Runs `docker-credential-<name> get` with the host on stdin; "not found" means no credential.
    static func runHelper(_ name: String, host: String) throws -> Credential? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["docker-credential-\(name)", "get"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        // Not a pipe read after stdout: a helper writing more than a pipe holds there would hang both.
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw RegistryError.invalidInput("cannot run docker-credential-\(name) named in the docker config: install it or pass credentials with options")
        }
        input.fileHandleForWriting.write(Data(host.utf8))
        try? input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            // Helpers answer "credentials not found in native keychain" with a non-zero exit.
            return nil
        }
        struct Reply: Decodable { var Username: String; var Secret: String }
        guard let reply = try? JSONDecoder().decode(Reply.self, from: data) else {
            throw RegistryError.invalidInput("docker-credential-\(name) gave an unreadable answer for \(host)")
        }
        return Credential(username: reply.Username, password: reply.Secret)
    }
}
