import Foundation
import Network
import Testing

@Suite struct ProxySettingsTests {
    @Test func lowercaseVariablesWinAndAllProxyFillsIn() throws {
        let settings = try ProxySettings.resolve(override: nil, environment: [
            "https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128",
            "HTTP_PROXY": "upper-http:8080", "ALL_PROXY": "socks5://all:1080",
        ])
        #expect(settings.httpsProxy == ProxyEndpoint(kind: .http, host: "lower", port: 3128))
        #expect(settings.httpProxy == ProxyEndpoint(kind: .http, host: "upper-http", port: 8080))
        let onlyAll = try ProxySettings.resolve(override: nil, environment: ["all_proxy": "http://all:9"])
        #expect(onlyAll.proxy(for: "https://registry.example.com/v2/") == ProxyEndpoint(kind: .http, host: "all", port: 9))
        #expect(onlyAll.proxy(for: "http://registry.example.com/v2/") == ProxyEndpoint(kind: .http, host: "all", port: 9))
        #expect(try ProxySettings.resolve(override: nil, environment: [:]) == .direct)
    }

    @Test func theFlagOverridesTheVariablesButNoProxyStays() throws {
        let settings = try ProxySettings.resolve(override: "http://flag:1", environment: [
            "HTTPS_PROXY": "http://env:2", "NO_PROXY": "internal.example",
        ])
        #expect(settings.proxy(for: "https://a.example/v2/")?.host == "flag")
        #expect(settings.proxy(for: "http://a.example/v2/")?.host == "flag")
        #expect(settings.proxy(for: "https://registry.internal.example/v2/") == nil)
    }

    @Test func credentialsAreReadAndNeverPrinted() throws {
        let proxy = try ProxyEndpoint.parse("http://al%40ice:p%3Ass@proxy.corp:3128", source: "HTTPS_PROXY")
        #expect(proxy.username == "al@ice" && proxy.password == "p:ss")
        #expect(!proxy.description.contains("p:ss") && !proxy.description.contains("p%3Ass"))
        #expect(proxy.description == "http://a***@proxy.corp:3128")
        let settings = ProxySettings(httpProxy: proxy, httpsProxy: proxy)
        #expect(!settings.summary.contains("p:ss"))
    }

    @Test func unusableProxyURLsNameTheirSource() {
        for (text, why) in [("https://proxy:443", "TLS"), ("ftp://proxy:21", "ftp"), ("http://", "no host"),
                            ("socks5://u:p@proxy:1080", "SOCKS"), ("http://proxy:99999", "")] {
            do {
                _ = try ProxyEndpoint.parse(text, source: "HTTPS_PROXY")
                Issue.record("\(text) was accepted")
            } catch let error as NetworkSettingsError {
                #expect(error.description.hasPrefix("HTTPS_PROXY is not a usable proxy URL"), "\(error)")
                #expect(why.isEmpty || error.description.contains(why) || error.description.lowercased().contains(why.lowercased()), "\(error)")
                #expect(!error.description.contains("u:p@"))
            } catch {
                Issue.record("\(text): \(error)")
            }
        }
        #expect(throws: NetworkSettingsError.self) { try ProxySettings.resolve(override: nil, environment: ["http_proxy": "gopher://x"]) }
    }

    @Test func defaultPorts() throws {
        #expect(try ProxyEndpoint.parse("proxy.corp", source: "x").port == 80)
        #expect(try ProxyEndpoint.parse("socks5h://proxy.corp", source: "x") == ProxyEndpoint(kind: .socks5, host: "proxy.corp", port: 1080))
        #expect(try ProxyEndpoint.parse("http://[::1]:3128", source: "x").host == "::1")
    }

    @Test func loopbackIsProxiedUnlessNoProxyNamesIt() throws {
        let proxied = try ProxySettings.resolve(override: nil, environment: ["HTTPS_PROXY": "http://p:1"])
        #expect(proxied.proxy(for: "https://127.0.0.1:5000/v2/") != nil)
        #expect(proxied.proxy(for: "https://localhost:5000/v2/") != nil)
        let direct = try ProxySettings.resolve(override: nil, environment: ["HTTPS_PROXY": "http://p:1", "no_proxy": "127.0.0.1,localhost"])
        #expect(direct.proxy(for: "https://127.0.0.1:5000/v2/") == nil)
        #expect(direct.proxy(for: "https://localhost:5000/v2/") == nil)
    }

    @Test func noProxyMatchesAsGoDoes() {
        let rules = NoProxyRules(" example.com, .sub.test ,*.star.test, 10.0.0.0/8, 192.168.1.7, registry.corp:5000, [::1], fd00::/8 ")
        let direct: [(String, Int)] = [
            ("example.com", 443), ("a.example.com", 443), ("EXAMPLE.com.", 80),
            ("x.sub.test", 443), ("x.star.test", 443),
            ("10.1.2.3", 443), ("192.168.1.7", 5000), ("registry.corp", 5000), ("::1", 443), ("[::1]", 443), ("fd12::1", 443),
        ]
        for (host, port) in direct { #expect(rules.matches(host: host, port: port), "\(host):\(port)") }
        let proxied: [(String, Int)] = [
            ("notexample.com", 443), ("sub.test", 443), ("star.test", 443), ("11.0.0.1", 443), ("192.168.1.8", 443),
            ("registry.corp", 443), ("::2", 443), ("fe80::1", 443),
        ]
        for (host, port) in proxied { #expect(!rules.matches(host: host, port: port), "\(host):\(port)") }
        #expect(NoProxyRules("*").matches(host: "anything", port: 1))
        #expect(NoProxyRules("").isEmpty)
    }
}
