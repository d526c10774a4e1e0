import Foundation
import NIOCore
import NIOPosix

/// A TCP proxy on 127.0.0.1 (ephemeral port) that forwards raw bytes to an upstream
/// 127.0.0.1:PORT (plain HTTP, or TLS passed through untouched) and injects faults on
/// the upstream→client direction. Forwarding follows the slower side (reads are only
/// asked for while the other side is writable), so memory stays flat whatever the size.
public final class FaultProxy: Sendable {
    public enum Fault: Sendable, Equatable {
        /// Forward everything.
        case none
        /// The next `connections` connections that carry response data get closed (both
        /// sides) once more than `bytes` bytes have gone upstream→client on them: the
        /// client receives exactly `bytes` bytes, then EOF.
        case cutAfter(bytes: Int, connections: Int)
        /// Each connection stops forwarding upstream→client after `afterBytes` bytes but
        /// stays open (to exercise idle timeouts). A stalled connection stays stalled.
        case stall(afterBytes: Int)
    }

    /// Setting a fault starts a new "generation": connections (new ones, and open
    /// keep-alive ones) pick it up on their next upstream→client data and count their
    /// bytes from then on. Setting `.none` disarms every connection that is not stalled.
    public var fault: Fault {
        get { state.locked.current.fault }
        set { setFault(newValue) }
    }

    public func setFault(_ fault: Fault) {
        state.locked.withLock { s in
            s.fault = fault
            s.generation &+= 1
            if case .cutAfter(_, let connections) = fault {
                s.cutsRemaining = connections
            } else {
                s.cutsRemaining = 0
            }
        }
    }

    /// Bytes forwarded upstream→client, over all connections.
    public var bytesToClient: Int { state.locked.current.bytesToClient }
    /// Bytes forwarded client→upstream, over all connections.
    public var bytesFromClient: Int { state.locked.current.bytesFromClient }
    public var connectionsAccepted: Int { state.locked.current.connectionsAccepted }
    /// Connections closed by `.cutAfter`.
    public var cutsPerformed: Int { state.locked.current.cutsPerformed }
    /// Connections stalled by `.stall`.
    public var stallsPerformed: Int { state.locked.current.stallsPerformed }
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
        upstreamPort: Int, upstreamHost: String = "127.0.0.1", fault: Fault = .none
    ) async throws -> FaultProxy {
        let state = ProxyState()
        state.locked.withLock { s in
            s.fault = fault
            if case .cutAfter(_, let connections) = fault { s.cutsRemaining = connections }
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

    /// Starts a proxy in front of `registry` (TLS, if any, is passed through: clients must
    /// still trust `registry.caFile`, and the certificate names 127.0.0.1).
    public static func start(upstream registry: TestRegistry, fault: Fault = .none) async throws -> FaultProxy {
        try await start(upstreamPort: registry.port, fault: fault)
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

final class ProxyState: Sendable {
    struct Values {
        var fault: FaultProxy.Fault = .none
        var generation: UInt64 = 1
        var cutsRemaining = 0
        var bytesToClient = 0
        var bytesFromClient = 0
        var connectionsAccepted = 0
        var cutsPerformed = 0
        var stallsPerformed = 0
        var clientChannels: [ObjectIdentifier: any Channel] = [:]
        var upstreamChannels: [ObjectIdentifier: any Channel] = [:]
    }

    enum Armed {
        case none
        case cut(limit: Int)
        case stall(limit: Int)
    }

    let locked = TSLocked(Values())

    /// If the fault generation moved past `known`, the new generation and what this
    /// connection is armed with now (claiming one of the remaining cuts if any).
    func rearm(known: UInt64) -> (UInt64, Armed)? {
        locked.withLock { s in
            guard s.generation != known else { return nil }
            switch s.fault {
            case .none:
                return (s.generation, .none)
            case .cutAfter(let bytes, _):
                if s.cutsRemaining > 0 {
                    s.cutsRemaining -= 1
                    return (s.generation, .cut(limit: max(0, bytes)))
                }
                return (s.generation, .none)
            case .stall(let afterBytes):
                return (s.generation, .stall(limit: max(0, afterBytes)))
            }
        }
    }
}

/// One side of a proxied connection; its partner sits on the other channel (same event loop).
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side { case client, upstream }

    private let side: Side
    private let state: ProxyState
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    // Upstream side only: the fault this connection is armed with.
    private var generation: UInt64 = 0
    private var armed: ProxyState.Armed = .none
    private var armedBytes = 0
    /// No more upstream→client forwarding (cut or stalled).
    private var halted = false
    /// This side's channel went inactive (or the handler was removed).
    private(set) var isClosed = false

    init(side: Side, state: ProxyState) {
        self.side = side
        self.state = state
    }

    func pair(with other: GlueHandler) {
        partner = other
        other.partner = self
        kick()
        other.kick()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.isClosed = true
        self.context = nil
        self.partner = nil
    }

    // MARK: Calls from the partner

    private func partnerWrite(_ buffer: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    /// The other side went away: send what is queued, then close.
    private func partnerClosed() {
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    private var partnerWritable: Bool {
        context?.channel.isWritable ?? false
    }

    private func partnerBecameWritable() {
        kick()
    }

    private func kick() {
        guard pendingRead, !halted, let context, partner?.partnerWritable == true else { return }
        pendingRead = false
        context.read()
    }

    // MARK: Channel events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        switch side {
        case .client:
            let count = buffer.readableBytes
            state.locked.withLock { $0.bytesFromClient += count }
            partner?.partnerWrite(buffer)
        case .upstream:
            if halted { return }
            if let (newGeneration, newArmed) = state.rearm(known: generation) {
                generation = newGeneration
                armed = newArmed
                armedBytes = 0
            }
            let count = buffer.readableBytes
            switch armed {
            case .none:
                forwardToClient(buffer)
            case .cut(let limit):
                if armedBytes + count > limit {
                    let allowed = limit - armedBytes
                    if allowed > 0, let prefix = buffer.readSlice(length: allowed) {
                        forwardToClient(prefix)
                    }
                    armedBytes = limit
                    cut(context: context)
                } else {
                    armedBytes += count
                    forwardToClient(buffer)
                }
            case .stall(let limit):
                if armedBytes + count > limit {
                    let allowed = limit - armedBytes
                    if allowed > 0, let prefix = buffer.readSlice(length: allowed) {
                        forwardToClient(prefix)
                        partner?.partnerFlush()
                    }
                    armedBytes = limit
                    halted = true
                    state.locked.withLock { $0.stallsPerformed += 1 }
                } else {
                    armedBytes += count
                    forwardToClient(buffer)
                }
            }
        }
    }

    private func forwardToClient(_ buffer: ByteBuffer) {
        let count = buffer.readableBytes
        guard count > 0 else { return }
        state.locked.withLock { $0.bytesToClient += count }
        partner?.partnerWrite(buffer)
    }

    private func cut(context: ChannelHandlerContext) {
        halted = true
        state.locked.withLock { $0.cutsPerformed += 1 }
        let client = partner
        partner = nil
        client?.partner = nil
        client?.partnerClosed()  // flushes the allowed prefix, then closes
        context.close(promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        let other = partner
        partner = nil
        other?.partner = nil
        other?.partnerClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if !halted, let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
