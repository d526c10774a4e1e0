import Foundation
import NIOCore
import NIOPosix

/// A TCP proxy on 127.0.0.1 (ephemeral port) that forwards raw bytes to an upstream
/// 127.0.0.1:PORT (plain HTTP, or TLS passed through untouched) and injects faults in both
/// directions:
///
/// - upstream→client (`fault`): cut a connection after N bytes (or at a seeded random offset
///   within a range), or stall it; `latency` delays every read before it is forwarded (order
///   kept) and `bytesPerSecond` caps each connection's rate, so a transfer takes a
///   predictable minimum time whatever the machine;
/// - client→upstream (`clientFault`): cut a connection after N bytes of request data (or at
///   a seeded random offset within a range), stall it, or hold all request traffic from the
///   moment a byte pattern (say `PUT /v2/x/manifests/`, plain HTTP only) is seen.
///
/// Forwarding follows the slower side (reads are only asked for while the other side is
/// writable and little is queued for delay), so memory stays flat whatever the size.
public final class FaultProxy: Sendable {
    public enum Fault: Sendable, Equatable {
        /// Forward everything.
        case none
        /// The next `connections` connections that carry response data get closed (both
        /// sides) once more than `bytes` bytes have gone upstream→client on them: the
        /// client receives exactly `bytes` bytes, then EOF.
        case cutAfter(bytes: Int, connections: Int)
        /// As `cutAfter`, each of the `connections` cuts at an offset drawn from `range` by a
        /// generator seeded with `seed` (the same seed gives the same offsets, in the order
        /// connections claim them; see `cutOffsets`).
        case cutWithin(ClosedRange<Int>, connections: Int, seed: UInt64)
        /// Each connection stops forwarding upstream→client after `afterBytes` bytes but
        /// stays open (to exercise idle timeouts). A stalled connection stays stalled.
        case stall(afterBytes: Int)
    }

    /// Faults on the client→upstream direction (requests, uploads).
    public enum ClientFault: Sendable, Equatable {
        /// Forward everything.
        case none
        /// The next `connections` connections that carry request data get closed (both sides)
        /// once more than `bytes` bytes have gone client→upstream on them: the upstream
        /// receives exactly `bytes` bytes, then EOF.
        case cutAfter(bytes: Int, connections: Int)
        /// As `cutAfter`, each cut at an offset drawn from `range` by a generator seeded with
        /// `seed` (see `clientCutOffsets`).
        case cutWithin(ClosedRange<Int>, connections: Int, seed: UInt64)
        /// Each connection stops forwarding client→upstream after `afterBytes` bytes and stays
        /// open: the client's writes back up, as on a stalled network. Stays stalled.
        case stall(afterBytes: Int)
        /// Counts the occurrences of `pattern` in the client→upstream bytes of all connections;
        /// when the `occurrence`-th one (1-based) begins, forwards what precedes it and from
        /// then on forwards nothing client→upstream on any connection, open or new (until
        /// another client fault is set). Responses already under way still flow. With plain
        /// HTTP this freezes a client deterministically at a named request.
        case holdAt(pattern: String, occurrence: Int)
    }

    /// Setting a fault starts a new "generation": connections (new ones, and open
    /// keep-alive ones) pick it up on their next upstream→client data and count their
    /// bytes from then on. Setting `.none` disarms every connection that is not stalled.
    public var fault: Fault {
        get { state.locked.current.fault }
        set { setFault(newValue) }
    }

    public func setFault(_ fault: Fault) {
        state.locked.withLock { $0.arm(fault) }
    }

    /// Like `fault`, for the client→upstream direction: connections pick it up on their next
    /// client→upstream data and count from then on.
    public var clientFault: ClientFault {
        get { state.locked.current.clientFault }
        set { setClientFault(newValue) }
    }

    public func setClientFault(_ fault: ClientFault) {
        state.locked.withLock { $0.armClient(fault) }
    }

    /// Each upstream→client read is forwarded this long after it arrived (order kept; reads
    /// go on meanwhile, up to `maxQueuedBytes` per connection). Applies to reads from now on.
    public var latency: Duration {
        get { state.locked.current.latency }
        set { state.locked.withLock { $0.latency = newValue } }
    }

    /// Upstream→client bytes per second per connection, or nil for no cap. Applies to reads
    /// from now on.
    public var bytesPerSecond: Int? {
        get { state.locked.current.bytesPerSecond }
        set { state.locked.withLock { $0.bytesPerSecond = newValue.map { max(1, $0) } } }
    }

    /// Upstream→client bytes per second across all connections (a link's capacity), or nil for
    /// no cap. Applies to reads from now on.
    public var linkBytesPerSecond: Int? {
        get { state.locked.current.linkBytesPerSecond }
        set { state.locked.withLock { $0.linkBytesPerSecond = newValue.map { max(1, $0) } } }
    }

    /// Paces client→upstream bytes too: `bytesPerSecond` per connection and `linkBytesPerSecond`
    /// on a link of its own (a full-duplex line has that capacity each way). No latency is
    /// added in that direction: the round trip already grows by `latency`.
    public var pacesUploads: Bool {
        get { state.locked.current.pacesUploads }
        set { state.locked.withLock { $0.pacesUploads = newValue } }
    }

    /// Bytes a connection may hold back for `latency`/`bytesPerSecond` before it stops reading
    /// from the upstream (or, with `pacesUploads`, from the client).
    public static let maxQueuedBytes = 256 << 10

    /// Bytes forwarded upstream→client, over all connections.
    public var bytesToClient: Int { state.locked.current.bytesToClient }
    /// Bytes forwarded client→upstream, over all connections.
    public var bytesFromClient: Int { state.locked.current.bytesFromClient }
    public var connectionsAccepted: Int { state.locked.current.connectionsAccepted }
    /// Connections closed by `.cutAfter` / `.cutWithin`.
    public var cutsPerformed: Int { state.locked.current.cutsPerformed }
    /// The offsets drawn by `.cutWithin`, in the order connections claimed them.
    public var cutOffsets: [Int] { state.locked.current.cutOffsets }
    /// Connections stalled by `.stall`.
    public var stallsPerformed: Int { state.locked.current.stallsPerformed }
    /// Connections closed by the client fault `.cutAfter` / `.cutWithin`.
    public var clientCutsPerformed: Int { state.locked.current.clientCutsPerformed }
    /// The offsets drawn by the client fault `.cutWithin`, in the order connections claimed them.
    public var clientCutOffsets: [Int] { state.locked.current.clientCutOffsets }
    /// Connections stalled by the client fault `.stall`.
    public var clientStallsPerformed: Int { state.locked.current.clientStallsPerformed }
    /// Occurrences of the `.holdAt` pattern seen since it was set.
    public var patternMatches: Int { state.locked.current.patternMatches }
    /// Whether `.holdAt` has fired (client→upstream traffic is held).
    public var isHolding: Bool { state.locked.withLock { $0.holding } }
    /// Client connections open right now.
    public var openConnections: Int { state.locked.current.clientChannels.count }

    /// The proxy's port on 127.0.0.1.
    public let port: Int
    /// `127.0.0.1:PORT`.
    public var host: String { "127.0.0.1:\(port)" }
    public let upstreamHost: String
    public let upstreamPort: Int

    private let state: ProxyState
    private let channel: any Channel

    private init(port: Int, upstreamHost: String, upstreamPort: Int, state: ProxyState, channel: any Channel) {
        self.port = port
        self.upstreamHost = upstreamHost
        self.upstreamPort = upstreamPort
        self.state = state
        self.channel = channel
    }

    /// Starts a proxy to `upstreamHost:upstreamPort`.
    public static func start(
        upstreamPort: Int, upstreamHost: String = "127.0.0.1", fault: Fault = .none,
        clientFault: ClientFault = .none, latency: Duration = .zero, bytesPerSecond: Int? = nil
    ) async throws -> FaultProxy {
        let state = ProxyState()
        state.locked.withLock { s in
            s.arm(fault)
            s.armClient(clientFault)
            s.latency = latency
            s.bytesPerSecond = bytesPerSecond.map { max(1, $0) }
        }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { client in
                Self.setUpConnection(client: client, upstreamHost: upstreamHost, upstreamPort: upstreamPort, state: state)
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        guard let port = channel.localAddress?.port else {
            try? await channel.close()
            throw TestSupportError("FaultProxy: no local port")
        }
        return FaultProxy(port: port, upstreamHost: upstreamHost, upstreamPort: upstreamPort, state: state, channel: channel)
    }

    /// Closes every open proxied connection (both sides), keeping the listener.
    public func closeAllConnections() {
        let channels = state.locked.withLock { s in Array(s.clientChannels.values) + Array(s.upstreamChannels.values) }
        for channel in channels { channel.close(promise: nil) }
    }

    /// Stops listening and closes every connection.
    public func shutdown() async throws {
        do {
            try await channel.close()
        } catch ChannelError.alreadyClosed {
        }
        closeAllConnections()
    }

    deinit {
        channel.close(promise: nil)
        closeAllConnections()
    }

    private static func setUpConnection(
        client: any Channel, upstreamHost: String, upstreamPort: Int, state: ProxyState
    ) -> EventLoopFuture<Void> {
        let clientID = ObjectIdentifier(client)
        state.locked.withLock { s in
            s.connectionsAccepted += 1
            s.clientChannels[clientID] = client
        }
        client.closeFuture.whenComplete { _ in
            _ = state.locked.withLock { $0.clientChannels.removeValue(forKey: clientID) }
        }
        return client.eventLoop.makeCompletedFuture {
            let clientGlue = GlueHandler(side: .client, state: state)
            try client.pipeline.syncOperations.addHandler(clientGlue)
            let boundClientGlue = NIOLoopBound(clientGlue, eventLoop: client.eventLoop)
            ClientBootstrap(group: client.eventLoop)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .channelInitializer { upstream in
                    let upstreamID = ObjectIdentifier(upstream)
                    state.locked.withLock { $0.upstreamChannels[upstreamID] = upstream }
                    upstream.closeFuture.whenComplete { _ in
                        _ = state.locked.withLock { $0.upstreamChannels.removeValue(forKey: upstreamID) }
                    }
                    return upstream.eventLoop.makeCompletedFuture {
                        try upstream.pipeline.syncOperations.addHandler(GlueHandler(side: .upstream, state: state))
                    }
                }
                .connect(host: upstreamHost, port: upstreamPort)
                .whenComplete { result in
                    switch result {
                    case .success(let upstream):
                        // Both channels live on client.eventLoop.
                        do {
                            let upstreamGlue = try upstream.pipeline.syncOperations.handler(type: GlueHandler.self)
                            let clientGlue = boundClientGlue.value
                            // The connect may complete before the accepted channel is even
                            // active (loopback connects can finish at once): pair unless
                            // the client already went away.
                            if !clientGlue.isClosed {
                                clientGlue.pair(with: upstreamGlue)
                            } else {
                                upstream.close(promise: nil)
                            }
                        } catch {
                            upstream.close(promise: nil)
                            client.close(promise: nil)
                        }
                    case .failure:
                        client.close(promise: nil)
                    }
                }
        }
    }
}
