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

    /// Starts a proxy in front of `registry` (TLS, if any, is passed through: clients must
    /// still trust `registry.caFile`, and the certificate names 127.0.0.1).
    public static func start(
        upstream registry: TestRegistry, fault: Fault = .none, clientFault: ClientFault = .none,
        latency: Duration = .zero, bytesPerSecond: Int? = nil
    ) async throws -> FaultProxy {
        try await start(upstreamPort: registry.port, fault: fault, clientFault: clientFault,
                        latency: latency, bytesPerSecond: bytesPerSecond)
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
        var cutRandom = FaultProxyRandom(seed: 0)
        var clientFault: FaultProxy.ClientFault = .none
        var clientGeneration: UInt64 = 1
        var clientCutsRemaining = 0
        var clientRandom = FaultProxyRandom(seed: 0)
        /// `.holdAt` fired in the current client generation.
        var holding = false
        var patternMatches = 0
        var latency: Duration = .zero
        var bytesPerSecond: Int?
        var linkBytesPerSecond: Int?
        /// When the shared link is free again (with `linkBytesPerSecond`).
        var linkFree = NIODeadline.uptimeNanoseconds(0)
        var pacesUploads = false
        /// When the link's client→upstream side is free again (with `pacesUploads`).
        var uplinkFree = NIODeadline.uptimeNanoseconds(0)
        var bytesToClient = 0
        var bytesFromClient = 0
        var connectionsAccepted = 0
        var cutsPerformed = 0
        var cutOffsets: [Int] = []
        var stallsPerformed = 0
        var clientCutsPerformed = 0
        var clientCutOffsets: [Int] = []
        var clientStallsPerformed = 0
        var clientChannels: [ObjectIdentifier: any Channel] = [:]
        var upstreamChannels: [ObjectIdentifier: any Channel] = [:]

        mutating func arm(_ fault: FaultProxy.Fault) {
            self.fault = fault
            generation &+= 1
            switch fault {
            case .cutAfter(_, let connections):
                cutsRemaining = connections
            case .cutWithin(_, let connections, let seed):
                cutsRemaining = connections
                cutRandom = FaultProxyRandom(seed: seed)
            case .none, .stall:
                cutsRemaining = 0
            }
        }

        mutating func armClient(_ fault: FaultProxy.ClientFault) {
            clientFault = fault
            clientGeneration &+= 1
            holding = false
            patternMatches = 0
            switch fault {
            case .cutAfter(_, let connections):
                clientCutsRemaining = connections
            case .cutWithin(_, let connections, let seed):
                clientCutsRemaining = connections
                clientRandom = FaultProxyRandom(seed: seed)
            case .none, .stall, .holdAt:
                clientCutsRemaining = 0
            }
        }
    }

    enum Armed {
        case none
        case cut(limit: Int)
        case stall(limit: Int)
        /// Client side only: watch for `pattern`.
        case hold(pattern: [UInt8], occurrence: Int)
    }

    let locked = TSLocked(Values())

    /// If the upstream→client fault generation moved past `known`, the new generation and
    /// what this connection is armed with now (claiming one of the remaining cuts if any).
    func rearm(known: UInt64) -> (UInt64, Armed)? {
        locked.withLock { s in
            guard s.generation != known else { return nil }
            switch s.fault {
            case .none:
                return (s.generation, .none)
            case .cutAfter(let bytes, _):
                guard s.cutsRemaining > 0 else { return (s.generation, .none) }
                s.cutsRemaining -= 1
                return (s.generation, .cut(limit: max(0, bytes)))
            case .cutWithin(let range, _, _):
                guard s.cutsRemaining > 0 else { return (s.generation, .none) }
                s.cutsRemaining -= 1
                let offset = s.cutRandom.next(in: range)
                s.cutOffsets.append(offset)
                return (s.generation, .cut(limit: max(0, offset)))
            case .stall(let afterBytes):
                return (s.generation, .stall(limit: max(0, afterBytes)))
            }
        }
    }

    /// The same for the client→upstream direction.
    func rearmClient(known: UInt64) -> (UInt64, Armed)? {
        locked.withLock { s in
            guard s.clientGeneration != known else { return nil }
            switch s.clientFault {
            case .none:
                return (s.clientGeneration, .none)
            case .cutAfter(let bytes, _):
                guard s.clientCutsRemaining > 0 else { return (s.clientGeneration, .none) }
                s.clientCutsRemaining -= 1
                return (s.clientGeneration, .cut(limit: max(0, bytes)))
            case .cutWithin(let range, _, _):
                guard s.clientCutsRemaining > 0 else { return (s.clientGeneration, .none) }
                s.clientCutsRemaining -= 1
                let offset = s.clientRandom.next(in: range)
                s.clientCutOffsets.append(offset)
                return (s.clientGeneration, .cut(limit: max(0, offset)))
            case .stall(let afterBytes):
                return (s.clientGeneration, .stall(limit: max(0, afterBytes)))
            case .holdAt(let pattern, let occurrence):
                return (s.clientGeneration, .hold(pattern: Array(pattern.utf8), occurrence: occurrence))
            }
        }
    }

    /// Counts one occurrence of the hold pattern; true when this one starts the hold.
    func countMatch(generation: UInt64, occurrence: Int) -> Bool {
        locked.withLock { s in
            guard s.clientGeneration == generation, !s.holding else { return false }
            s.patternMatches += 1
            if s.patternMatches >= occurrence { s.holding = true }
            return s.holding
        }
    }

    func isHolding(generation: UInt64) -> Bool {
        locked.withLock { $0.holding && $0.clientGeneration == generation }
    }

    var pacing: (latency: Duration, bytesPerSecond: Int?) {
        locked.withLock { ($0.latency, $0.bytesPerSecond) }
    }

    /// With a link cap, reserves the link for `count` bytes and says when they have crossed it.
    func linkSlot(_ count: Int) -> NIODeadline? {
        locked.withLock { s -> NIODeadline? in
            guard let rate = s.linkBytesPerSecond else { return nil }
            let end = max(NIODeadline.now(), s.linkFree) + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate))
            s.linkFree = end
            return end
        }
    }

    /// With `pacesUploads`: the per-connection rate for client→upstream bytes and, with a link
    /// cap, when `count` bytes have crossed the link's other side; nil when uploads go unpaced.
    func uploadPacing(_ count: Int) -> (bytesPerSecond: Int?, link: NIODeadline?)? {
        locked.withLock { s -> (Int?, NIODeadline?)? in
            guard s.pacesUploads, s.bytesPerSecond != nil || s.linkBytesPerSecond != nil else { return nil }
            var link: NIODeadline?
            if let rate = s.linkBytesPerSecond {
                let end = max(NIODeadline.now(), s.uplinkFree) + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate))
                s.uplinkFree = end
                link = end
            }
            return (s.bytesPerSecond, link)
        }
    }
}

/// A small seeded generator (FaultProxyRandom): the same seed gives the same offsets, so a failure
/// found with random cut points reproduces.
struct FaultProxyRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func next(in range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound) &+ 1
        guard span > 0 else { return range.lowerBound &+ Int(truncatingIfNeeded: next()) }
        return range.lowerBound + Int(next() % span)
    }
}

extension Duration {
    fileprivate var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// One side of a proxied connection; its partner sits on the other channel (same event loop).
/// The client side applies the client→upstream fault; the upstream side the upstream→client
/// fault and the delay queue of `latency` / `bytesPerSecond`.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side { case client, upstream }

    private let side: Side
    private let state: ProxyState
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var channel: (any Channel)?
    private var pendingRead = false

    // The fault this side is armed with (its own direction: upstream→client on the upstream
    // side, client→upstream on the client side).
    private var generation: UInt64 = 0
    private var armed: ProxyState.Armed = .none
    private var armedBytes = 0
    /// Client side, `.hold`: the last bytes forwarded, to find a pattern split across reads.
    private var tail: [UInt8] = []
    /// No more forwarding in this side's direction (cut, stalled or held).
    private var halted = false
    /// This side's channel went inactive (or the handler was removed).
    private(set) var isClosed = false

    // Data read on this side waiting for its release time to the partner (latency, bandwidth
    // cap), in order: upstream→client on the upstream side, client→upstream (`pacesUploads`)
    // on the client side.
    private enum Delayed {
        case data(ByteBuffer)
        /// Close both sides once everything before has gone out (a cut).
        case cut
        /// This side's channel closed: close the partner once everything before has gone out.
        case closePartner
    }
    private var queue = CircularBuffer<(deadline: NIODeadline, item: Delayed)>()
    private var queuedBytes = 0
    private var lastDeadline = NIODeadline.uptimeNanoseconds(0)
    private var timer: Scheduled<Void>?

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
        self.channel = context.channel
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.isClosed = true
        self.context = nil
        // Data still queued for the client (and the close after it) goes out on its own timer.
        if queue.isEmpty { self.partner = nil }
    }

    // MARK: Calls from the partner

    private func partnerWrite(_ buffer: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    /// The other side went away: drop what waits for it, send what is queued, then close.
    private func partnerClosed() {
        dropQueue()
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

    private var mayRead: Bool {
        !halted && partner?.partnerWritable == true && queuedBytes < FaultProxy.maxQueuedBytes
    }

    private func kick() {
        guard pendingRead, let context, mayRead else { return }
        pendingRead = false
        context.read()
    }

    // MARK: Channel events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch side {
        case .client: clientRead(context: context, buffer)
        case .upstream: upstreamRead(context: context, buffer)
        }
    }

    // MARK: client→upstream

    private func clientRead(context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        var buffer = buffer
        if halted { return }
        if let (newGeneration, newArmed) = state.rearmClient(known: generation) {
            generation = newGeneration
            armed = newArmed
            armedBytes = 0
            tail = []
        }
        let count = buffer.readableBytes
        switch armed {
        case .none:
            forwardToUpstream(buffer)
        case .cut(let limit):
            guard armedBytes + count > limit else {
                armedBytes += count
                forwardToUpstream(buffer)
                return
            }
            if limit - armedBytes > 0, let prefix = buffer.readSlice(length: limit - armedBytes) {
                forwardToUpstream(prefix)
            }
            armedBytes = limit
            cutFromClientSide(context: context)
        case .stall(let limit):
            guard armedBytes + count > limit else {
                armedBytes += count
                forwardToUpstream(buffer)
                return
            }
            if limit - armedBytes > 0, let prefix = buffer.readSlice(length: limit - armedBytes) {
                forwardToUpstream(prefix)
                partner?.partnerFlush()
            }
            armedBytes = limit
            halted = true
            state.locked.withLock { $0.clientStallsPerformed += 1 }
        case .hold(let pattern, let occurrence):
            if state.isHolding(generation: generation) {
                halted = true
                return
            }
            let bytes = Array(buffer.readableBytesView)
            let combined = tail + bytes
            if !pattern.isEmpty, combined.count >= pattern.count {
                // Matches that end in the new bytes (those within `tail` were counted already).
                let firstStart = max(0, tail.count - pattern.count + 1)
                var start = firstStart
                while start + pattern.count <= combined.count {
                    if combined[start] == pattern[0], combined[start..<(start + pattern.count)].elementsEqual(pattern),
                       state.countMatch(generation: generation, occurrence: occurrence) {
                        let before = start - tail.count
                        if before > 0, let prefix = buffer.readSlice(length: before) {
                            forwardToUpstream(prefix)
                            partner?.partnerFlush()
                        }
                        halted = true
                        return
                    }
                    start += 1
                }
            }
            tail = Array(combined.suffix(max(0, pattern.count - 1)))
            forwardToUpstream(buffer)
        }
    }

    private func forwardToUpstream(_ buffer: ByteBuffer) {
        let count = buffer.readableBytes
        guard count > 0 else { return }
        state.locked.withLock { $0.bytesFromClient += count }
        guard let (rate, link) = state.uploadPacing(count) else {
            if queue.isEmpty {
                partner?.partnerWrite(buffer)
            } else {
                delay(buffer, until: max(NIODeadline.now(), lastDeadline))
            }
            return
        }
        var deadline = max(NIODeadline.now(), lastDeadline)
        if let rate { deadline = deadline + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate)) }
        if let link { deadline = max(deadline, link) }
        delay(buffer, until: deadline)
    }

    /// Client side: the upstream gets what was forwarded, then both sides close.
    private func cutFromClientSide(context: ChannelHandlerContext) {
        halted = true
        state.locked.withLock { $0.clientCutsPerformed += 1 }
        let upstream = partner
        partner = nil
        upstream?.partner = nil
        upstream?.partnerClosed()  // flushes the allowed prefix, then closes
        context.close(promise: nil)
    }

    // MARK: upstream→client

    private func upstreamRead(context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        var buffer = buffer
        if halted { return }
        if let (newGeneration, newArmed) = state.rearm(known: generation) {
            generation = newGeneration
            armed = newArmed
            armedBytes = 0
        }
        let count = buffer.readableBytes
        switch armed {
        case .none, .hold:
            forwardToClient(buffer)
        case .cut(let limit):
            guard armedBytes + count > limit else {
                armedBytes += count
                forwardToClient(buffer)
                return
            }
            if limit - armedBytes > 0, let prefix = buffer.readSlice(length: limit - armedBytes) {
                forwardToClient(prefix)
            }
            armedBytes = limit
            halted = true
            state.locked.withLock { $0.cutsPerformed += 1 }
            enqueue(.cut)
        case .stall(let limit):
            guard armedBytes + count > limit else {
                armedBytes += count
                forwardToClient(buffer)
                return
            }
            if limit - armedBytes > 0, let prefix = buffer.readSlice(length: limit - armedBytes) {
                forwardToClient(prefix)
                if queue.isEmpty { partner?.partnerFlush() }
            }
            armedBytes = limit
            halted = true
            state.locked.withLock { $0.stallsPerformed += 1 }
        }
    }

    /// Sends `buffer` to the client now, or after its delay when pacing is on (or earlier
    /// data still waits).
    private func forwardToClient(_ buffer: ByteBuffer) {
        let count = buffer.readableBytes
        guard count > 0 else { return }
        let (latency, rate) = state.pacing
        let link = state.linkSlot(count)
        if queue.isEmpty && latency == .zero && rate == nil && link == nil {
            state.locked.withLock { $0.bytesToClient += count }
            partner?.partnerWrite(buffer)
            return
        }
        var deadline = max(NIODeadline.now() + latency.timeAmount, lastDeadline)
        if let rate {
            deadline = deadline + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate))
        }
        // The shared link serialises every connection's bytes; the latency comes on top.
        if let link { deadline = max(deadline, link + latency.timeAmount) }
        delay(buffer, until: deadline)
    }

    /// Queues `buffer` for the partner at `deadline` (after everything queued before it).
    private func delay(_ buffer: ByteBuffer, until deadline: NIODeadline) {
        lastDeadline = deadline
        queue.append((deadline, .data(buffer)))
        queuedBytes += buffer.readableBytes
        scheduleDrain()
    }

    /// Queues a close after the data before it (or does it now when nothing waits).
    private func enqueue(_ item: Delayed) {
        if queue.isEmpty {
            perform(item)
            return
        }
        queue.append((max(lastDeadline, NIODeadline.now()), item))
        scheduleDrain()
    }

    private func perform(_ item: Delayed) {
        switch item {
        case .data(let buffer):
            if side == .upstream { state.locked.withLock { $0.bytesToClient += buffer.readableBytes } }
            partner?.partnerWrite(buffer)
        case .cut:
            let client = partner
            partner = nil
            client?.partner = nil
            client?.partnerClosed()  // flushes what was sent, then closes
            channel?.close(promise: nil)
            dropQueue()
        case .closePartner:
            let client = partner
            partner = nil
            client?.partner = nil
            client?.partnerClosed()
            dropQueue()
        }
    }

    private func scheduleDrain() {
        guard timer == nil, let head = queue.first, let loop = channel?.eventLoop else { return }
        timer = loop.assumeIsolated().scheduleTask(deadline: head.deadline) { [self] in
            self.timer = nil
            self.drain()
        }
    }

    private func drain() {
        let now = NIODeadline.now()
        var wrote = false
        while let head = queue.first, head.deadline <= now {
            queue.removeFirst()
            if case .data(let buffer) = head.item {
                queuedBytes -= buffer.readableBytes
                perform(head.item)
                wrote = true
            } else {
                if wrote { partner?.partnerFlush() }
                perform(head.item)
                return
            }
        }
        if wrote { partner?.partnerFlush() }
        if queue.isEmpty && isClosed { partner = nil }
        scheduleDrain()
        kick()
    }

    private func dropQueue() {
        queue.removeAll()
        queuedBytes = 0
        timer?.cancel()
        timer = nil
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if queue.isEmpty { partner?.partnerFlush() }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        if !queue.isEmpty {
            // What this side sent still goes out at its pace, then the partner is closed.
            enqueue(.closePartner)
        } else {
            let other = partner
            partner = nil
            other?.partner = nil
            other?.partnerClosed()
        }
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
        if mayRead {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
