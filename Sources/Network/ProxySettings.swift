import Foundation

/// A proxy to send requests through: an HTTP proxy (spoken to with `CONNECT`, for `https://` and
/// `http://` targets alike) or a SOCKS5 one. Its credentials never appear in `description`.
public struct ProxyEndpoint: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable { case http, socks5 }
    public var kind: Kind
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?

    public init(kind: Kind, host: String, port: Int, username: String? = nil, password: String? = nil) {
        self.kind = kind
        self.host = host
        self.port = port
        self.username = username
        self.password = password
    }

    /// `http://HOST:PORT` (with `user@` when it has credentials, never the password).
    public var description: String {
        "\(kind.rawValue)://\(username.map { "\(Self.hidden($0))@" } ?? "")\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }

    /// A user name as printed: its first character, then `***` (it may itself be a secret, such as a token).
    private static func hidden(_ user: String) -> String { user.isEmpty ? "" : "\(user.prefix(1))***" }

    /// Parses a proxy URL as Go tools and curl take it: `http://[user:password@]host[:port]`,
    /// a bare `host:port` (http), or `socks5://` / `socks5h://host[:port]`. `source` names where it
    /// came from (an environment variable, `--proxy`) in the error.
    public static func parse(_ text: String, source: String) throws -> ProxyEndpoint {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        func fail(_ why: String) -> NetworkSettingsError {
            .invalid("\(source) is not a usable proxy URL (\(why)); give http://[USER:PASSWORD@]HOST:PORT or socks5://HOST:PORT")
        }
        guard !trimmed.isEmpty else { throw fail("it is empty") }
        let withScheme = trimmed.contains("://") ? trimmed : "http://" + trimmed
        guard let components = URLComponents(string: withScheme), let scheme = components.scheme?.lowercased() else {
            throw fail("it cannot be read as a URL")
        }
        let kind: Kind
        switch scheme {
        case "http": kind = .http
        case "socks5", "socks5h": kind = .socks5
        case "https": throw fail("a proxy spoken to over TLS (https://) is not supported; most proxies take http:// for HTTPS traffic too")
        default: throw fail("the scheme \(scheme):// is not one of http, socks5")
        }
        guard let host = components.host, !host.isEmpty else { throw fail("it names no host") }
        let port = components.port ?? (kind == .http ? 80 : 1080)
        guard (1...65535).contains(port) else { throw fail("the port is out of range") }
        let username = components.user.map { $0.removingPercentEncoding ?? $0 }
        let password = components.password.map { $0.removingPercentEncoding ?? $0 }
        if kind == .socks5, username != nil {
            throw fail("credentials for a SOCKS proxy are not supported")
        }
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return ProxyEndpoint(kind: kind, host: bareHost, port: port, username: username, password: password)
    }
}

/// Which requests go through which proxy: `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`
/// from the environment (each read in lowercase first, then uppercase, as curl does), or one proxy
/// for everything from `--proxy`, which overrides the variables (`NO_PROXY` still applies).
///
/// Unlike Go tools (d8 among them), loopback addresses are proxied like any other unless
/// `NO_PROXY` names them: the operator's proxy decides, and tests can put a real proxy in front
/// of registries on 127.0.0.1.
public struct ProxySettings: Hashable, Sendable {
    public var httpProxy: ProxyEndpoint?
    public var httpsProxy: ProxyEndpoint?
    public var noProxy: NoProxyRules

    public init(httpProxy: ProxyEndpoint? = nil, httpsProxy: ProxyEndpoint? = nil, noProxy: NoProxyRules = NoProxyRules("")) {
        self.httpProxy = httpProxy
        self.httpsProxy = httpsProxy
        self.noProxy = noProxy
    }

    /// No proxy at all.
    public static let direct = ProxySettings()

    /// The settings in force: `override` (`--proxy`) for both schemes when given, else the
    /// environment. An unusable value is a `NetworkSettingsError` naming the variable or option.
    public static func resolve(override: String?, overrideName: String = "--proxy",
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ProxySettings {
        func variable(_ name: String) -> (name: String, value: String)? {
            for spelled in [name.lowercased(), name] {
                if let value = environment[spelled], !value.trimmingCharacters(in: .whitespaces).isEmpty { return (spelled, value) }
            }
            return nil
        }
        let noProxy = NoProxyRules(variable("NO_PROXY")?.value ?? "")
        if let override {
            let proxy = try ProxyEndpoint.parse(override, source: overrideName)
            return ProxySettings(httpProxy: proxy, httpsProxy: proxy, noProxy: noProxy)
        }
        let all = try variable("ALL_PROXY").map { try ProxyEndpoint.parse($0.value, source: $0.name) }
        let http = try variable("HTTP_PROXY").map { try ProxyEndpoint.parse($0.value, source: $0.name) } ?? all
        let https = try variable("HTTPS_PROXY").map { try ProxyEndpoint.parse($0.value, source: $0.name) } ?? all
        return ProxySettings(httpProxy: http, httpsProxy: https, noProxy: noProxy)
    }

    /// The proxy for a request to `url`, nil when it goes direct.
    public func proxy(for url: String) -> ProxyEndpoint? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              let host = components.host else { return nil }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        return proxy(scheme: scheme, host: host, port: port)
    }

    public func proxy(scheme: String, host: String, port: Int) -> ProxyEndpoint? {
        let chosen = scheme.lowercased() == "https" ? httpsProxy : httpProxy
        guard let chosen else { return nil }
        return noProxy.matches(host: host, port: port) ? nil : chosen
    }

    /// One line for `-v` logs: where each scheme goes (no credentials).
    public var summary: String {
        "proxy for https: \(httpsProxy?.description ?? "none"), for http: \(httpProxy?.description ?? "none")"
            + (noProxy.isEmpty ? "" : ", NO_PROXY: \(noProxy.text)")
    }
}

/// `NO_PROXY` as Go reads it: comma-separated entries, each `*` (everything), an IP address, a
/// CIDR block, or a host name (`example.com` matches it and its subdomains; `.example.com` and
/// `*.example.com` only the subdomains), each optionally with `:PORT`.
public struct NoProxyRules: Hashable, Sendable {
    public let text: String
    private var matchAll = false
    private var entries: [Entry] = []

    private enum Pattern: Hashable, Sendable {
        case address([UInt8])
        case block([UInt8], prefixLength: Int)
        case name(String, subdomainsOnly: Bool)
    }

    private struct Entry: Hashable, Sendable {
        var pattern: Pattern
        var port: Int?
    }

    public init(_ text: String) {
        self.text = text
        for raw in text.split(separator: ",") {
            var item = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if item.isEmpty { continue }
            if item == "*" { matchAll = true; continue }
            if let slash = item.firstIndex(of: "/"), let length = Int(item[item.index(after: slash)...]),
               let address = Self.address(String(item[..<slash])), (0...(address.count * 8)).contains(length) {
                entries.append(Entry(pattern: .block(address, prefixLength: length), port: nil))
                continue
            }
            if let address = Self.address(item.hasPrefix("[") && item.hasSuffix("]") ? String(item.dropFirst().dropLast()) : item) {
                entries.append(Entry(pattern: .address(address), port: nil))
                continue
            }
            var port: Int?
            if let bracketEnd = item.lastIndex(of: "]"), item.hasPrefix("[") {
                // [v6]:port
                let rest = item[item.index(after: bracketEnd)...]
                if rest.hasPrefix(":"), let value = Int(rest.dropFirst()) { port = value }
                let inner = String(item[item.index(after: item.startIndex)..<bracketEnd])
                if let address = Self.address(inner) {
                    entries.append(Entry(pattern: .address(address), port: port))
                }
                continue
            }
            if let colon = item.lastIndex(of: ":"), let value = Int(item[item.index(after: colon)...]) {
                port = value
                item = String(item[..<colon])
            }
            if let address = Self.address(item) {
                entries.append(Entry(pattern: .address(address), port: port))
                continue
            }
            var subdomainsOnly = false
            if item.hasPrefix("*.") { item.removeFirst(2); subdomainsOnly = true } else if item.hasPrefix(".") { item.removeFirst(); subdomainsOnly = true }
            if item.hasSuffix(".") { item.removeLast() }
            guard !item.isEmpty else { continue }
            entries.append(Entry(pattern: .name(item, subdomainsOnly: subdomainsOnly), port: port))
        }
    }

    public var isEmpty: Bool { !matchAll && entries.isEmpty }

    /// Whether a request to `host:port` goes direct.
    public func matches(host rawHost: String, port: Int) -> Bool {
        if matchAll { return true }
        var host = rawHost.lowercased()
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.hasSuffix(".") { host.removeLast() }
        let address = Self.address(host)
        for entry in entries {
            if let wanted = entry.port, wanted != port { continue }
            switch entry.pattern {
            case .address(let bytes):
                if address == bytes { return true }
            case .block(let bytes, let length):
                if let address, address.count == bytes.count, Self.samePrefix(address, bytes, bits: length) { return true }
            case .name(let name, let subdomainsOnly):
                if address != nil { continue }
                if host.hasSuffix("." + name) || (!subdomainsOnly && host == name) { return true }
            }
        }
        return false
    }

    /// The bytes of an IPv4 or IPv6 literal, nil for a name.
    static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: v6) { Array($0) }
        }
        return nil
    }

    private static func samePrefix(_ a: [UInt8], _ b: [UInt8], bits: Int) -> Bool {
        var remaining = bits
        for (x, y) in zip(a, b) where remaining > 0 {
            let take = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - take))
            if x & mask != y & mask { return false }
            remaining -= take
        }
        return true
    }
}

/// A proxy or trust setting that cannot be used: the CLI answers with exit code 2.
public enum NetworkSettingsError: Error, Equatable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let message): return message
        }
    }
}
