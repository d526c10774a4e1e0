import ArgumentParser
import Foundation
import DevSupport

/// A far, thin network in front of a local registry, for the benchmark: the test suite's
/// FaultProxy with latency on every read, a per-connection rate and a shared link rate.
struct WANProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wan-proxy",
        abstract: "Forward 127.0.0.1:PORT to an upstream with added latency and rate caps, until killed; prints PORT=.")

    @Option(help: "Upstream HOST:PORT (on 127.0.0.1).") var upstream: String
    @Option(help: "Latency added to every upstream→client read, in milliseconds (the round trip grows by as much).") var latencyMs = 40
    @Option(help: "Bytes per second per connection (0: no cap).") var connectionRate = 8_000_000
    @Option(help: "Bytes per second across all connections (0: no cap).") var linkRate = 40_000_000
    @Flag(help: "Pace client→upstream bytes too, at the same per-connection and link rates (a push over the WAN).") var paceUploads = false
    @Option(help: "Rewrite this file with `bytesToClient N` and `bytesFromClient N` every 100 ms.") var stats: String?

    func run() async throws {
        guard let colon = upstream.lastIndex(of: ":"), let port = Int(upstream[upstream.index(after: colon)...]) else {
            throw ValidationError("--upstream takes HOST:PORT")
        }
        let proxy = try await FaultProxy.start(upstreamPort: port, upstreamHost: String(upstream[..<colon]),
                                               latency: .milliseconds(latencyMs),
                                               bytesPerSecond: connectionRate > 0 ? connectionRate : nil)
        proxy.linkBytesPerSecond = linkRate > 0 ? linkRate : nil
        proxy.pacesUploads = paceUploads
        FileHandle.standardOutput.write(Data("PORT=\(proxy.port)\n".utf8))
        while true {
            if let stats { try? Data("bytesToClient \(proxy.bytesToClient)\nbytesFromClient \(proxy.bytesFromClient)\n".utf8).write(to: URL(fileURLWithPath: stats), options: .atomic) }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
