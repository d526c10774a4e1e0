import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// An HTTP/1.1 proxy on 127.0.0.1 in front of a plain-HTTP registry that injects faults into
/// chosen requests: answers them itself with a status (503, 429 with `Retry-After`), cuts the
/// connection at a random offset inside a request or response body, or stalls a response
/// (the connection stays open and silent, so the client's idle timeout must fire).
///
/// Unlike `FaultProxy` (raw bytes, TLS passed through) it sees requests, so faults land on
/// exactly the requests a test names. Each client connection gets its own upstream
/// connection; bodies stream through with backpressure, so memory stays flat.
public final class HTTPFaultProxy: Sendable {
    public enum Fault: Sendable, Equatable {
        /// The proxy answers with `status` (and `Retry-After` when given); the request never
        /// reaches the registry. Its body, if any, is read and dropped first.
        case status(Int, retryAfter: String? = nil)
        /// The response's head and a random number (in `range`, below the body's length) of
        /// body bytes reach the client, then both connections close.
        case cutResponse(afterBodyBytes: ClosedRange<Int>)
        /// A random number of the request's body bytes (in `range`, below its length) reach
        /// the registry, then both connections close.
        case cutRequest(afterBodyBytes: ClosedRange<Int>)
        /// The response's head and a random number of body bytes reach the client, then
        /// nothing more: the connection stays open and silent.
        case stallResponse(afterBodyBytes: ClosedRange<Int>)
        /// The request reaches the registry, which does its work; the client gets `status` with
        /// an empty body instead of the registry's answer: a gateway that gave up on a request
        /// the registry completed (an Ingress's 504 on a long commit).
        case replaceStatus(Int)
        /// The request reaches the registry, which does its work; no byte of its answer reaches
        /// the client, and the connection stays open and silent (a bodyless answer, which
        /// `stallResponse` cannot hold back, included).
        case withholdResponse
        /// The request reaches the registry without its `Range` header, so it is answered with
        /// the whole body (200): a registry or proxy that does not serve ranges.
        case dropRange
        /// The request reaches the registry without its query: a mount (`?mount=&from=`)
        /// becomes a plain upload start, answered with a session, as by a registry that
        /// refuses cross-repository mounts.
        case dropQuery
    }

    /// Which requests get a fault: those whose method is in `methods` (any when empty) and
    /// whose path contains `pathContains` (any when nil); of those, every `every`-th one,
    /// `limit` times at most.
    public struct Rule: Sendable {
        public var fault: Fault
        public var methods: Set<String>
        public var pathContains: String?
        public var every: Int
        public var limit: Int

        public init(_ fault: Fault, methods: Set<String> = [], pathContains: String? = nil, every: Int = 1, limit: Int = .max) {
            self.fault = fault
            self.methods = methods
            self.pathContains = pathContains
            self.every = max(1, every)
            self.limit = limit
        }

        func matches(method: String, uri: String) -> Bool {
            (methods.isEmpty || methods.contains(method)) && (pathContains.map { uri.contains($0) } ?? true)
        }
    }

    public let port: Int
    /// `127.0.0.1:PORT`.
    public var host: String { "127.0.0.1:\(port)" }

    /// Requests seen (all of them, faulted or not).
    public var requests: Int { state.locked.current.requests }
    /// Every request seen, as `METHOD path` (no query), in order.
    public var requestLines: [String] { state.locked.current.requestLines }
    /// Faults injected so far.
    public var faultsInjected: Int { state.locked.current.injected }
    /// Body bytes forwarded registry→client and client→registry.
    public var responseBodyBytes: Int { state.locked.current.responseBodyBytes }
    public var requestBodyBytes: Int { state.locked.current.requestBodyBytes }
    /// Requests that carried a `Range` header (counted before any fault drops it).
    public var rangedRequests: Int { state.locked.current.rangedRequests }
    /// One line per injected fault (`METHOD path: fault`), for test messages.
    public var log: [String] { state.locked.current.log }

    /// Replaces the rules; counting of `every` and `limit` starts again.
    public func setRules(_ rules: [Rule]) {
        state.locked.withLock { s in
            s.rules = rules
            s.matched = Array(repeating: 0, count: rules.count)
            s.injectedByRule = Array(repeating: 0, count: rules.count)
        }
    }

    private let state: HTTPProxyState
    private let channel: any Channel

    private init(port: Int, state: HTTPProxyState, channel: any Channel) {
        self.port = port
        self.state = state
        self.channel = channel
    }

    /// Starts a proxy to the plain-HTTP registry at 127.0.0.1:`upstreamPort`. `seed` makes
    /// the random offsets of a run reproducible.
    public static func start(upstreamPort: Int, rules: [Rule] = [], seed: UInt64 = 0x5EED) async throws -> HTTPFaultProxy {
        let state = HTTPProxyState(seed: seed)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { client in
                connect(client: client, upstreamPort: upstreamPort, state: state)
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        guard let port = channel.localAddress?.port else {
            try? await channel.close()
            throw TestSupportError("HTTPFaultProxy: no local port")
        }
        let proxy = HTTPFaultProxy(port: port, state: state, channel: channel)
        proxy.setRules(rules)
        return proxy
    }

    /// Starts a proxy in front of `registry`, which must serve plain HTTP.
    public static func start(upstream registry: TestRegistry, rules: [Rule] = [], seed: UInt64 = 0x5EED) async throws -> HTTPFaultProxy {
        guard !registry.isTLS else { throw TestSupportError("HTTPFaultProxy needs a plain-HTTP registry (it reads requests)") }
        return try await start(upstreamPort: registry.port, rules: rules, seed: seed)
    }

    /// Stops listening and closes every connection.
    public func shutdown() async {
        try? await channel.close()
        let open = state.locked.withLock { Array($0.channels.values) }
        for channel in open { channel.close(promise: nil) }
    }

    deinit {
        channel.close(promise: nil)
    }

    private static func connect(client: any Channel, upstreamPort: Int, state: HTTPProxyState) -> EventLoopFuture<Void> {
        state.track(client)
        return client.pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false).flatMapThrowing {
            let clientSide = ClientSideHandler(state: state)
            try client.pipeline.syncOperations.addHandler(clientSide)
            let bound = NIOLoopBound(clientSide, eventLoop: client.eventLoop)
            ClientBootstrap(group: client.eventLoop)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .channelInitializer { upstream in
                    state.track(upstream)
                    return upstream.pipeline.addHTTPClientHandlers().flatMapThrowing {
                        try upstream.pipeline.syncOperations.addHandler(UpstreamSideHandler(state: state))
                    }
                }
                .connect(host: "127.0.0.1", port: upstreamPort)
                .whenComplete { result in
                    guard case .success(let upstream) = result,
                          let upstreamSide = try? upstream.pipeline.syncOperations.handler(type: UpstreamSideHandler.self),
                          !bound.value.isClosed else {
                        if case .success(let upstream) = result { upstream.close(promise: nil) }
                        client.close(promise: nil)
                        return
                    }
                    bound.value.pair(with: upstreamSide)
                }
        }
    }
}

/// Shared between every connection of one proxy.
final class HTTPProxyState: Sendable {
    struct Values {
        var rules: [HTTPFaultProxy.Rule] = []
        var matched: [Int] = []
        var injectedByRule: [Int] = []
        var requests = 0
        var requestLines: [String] = []
        var rangedRequests = 0
        var injected = 0
        var responseBodyBytes = 0
        var requestBodyBytes = 0
        var log: [String] = []
        var random: SeededGenerator
        var channels: [ObjectIdentifier: any Channel] = [:]
    }

    let locked: TSLocked<Values>

    init(seed: UInt64) {
        locked = TSLocked(Values(random: SeededGenerator(seed: seed)))
    }

    func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        locked.withLock { $0.channels[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in _ = locked.withLock { $0.channels.removeValue(forKey: id) } }
    }

    /// The fault for a new request, if a rule picks it.
    func fault(method: String, uri: String) -> HTTPFaultProxy.Fault? {
        locked.withLock { s in
            s.requests += 1
            s.requestLines.append("\(method) \(uri.split(separator: "?").first ?? "")")
            for (i, rule) in s.rules.enumerated() where rule.matches(method: method, uri: uri) {
                s.matched[i] += 1
                guard s.matched[i] % rule.every == 0, s.injectedByRule[i] < rule.limit else { continue }
                s.injectedByRule[i] += 1
                s.injected += 1
                s.log.append("\(method) \(uri.split(separator: "?").first ?? ""): \(rule.fault)")
                return rule.fault
            }
            return nil
        }
    }

    /// A byte offset in `range` that lies inside a body of `length` bytes (when known).
    func offset(in range: ClosedRange<Int>, below length: Int?) -> Int {
        let pick = locked.withLock { s in s.random.next(in: range) }
        guard let length, length > 0 else { return pick }
        return min(pick, length - 1)
    }

    func countResponse(_ n: Int) { locked.withLock { $0.responseBodyBytes += n } }
    func countRequest(_ n: Int) { locked.withLock { $0.requestBodyBytes += n } }
}

/// What a fault does to the body flowing in one direction: pass, stop after `limit` bytes and
/// close, or stop after `limit` bytes and go silent.
private enum BodyLimit {
    case none
    case cut(Int)
    case stall(Int)
}

/// The client's connection: request parts in, response parts out.
final class ClientSideHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: HTTPProxyState
    fileprivate weak var upstream: UpstreamSideHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private(set) var isClosed = false
    /// The current request is answered by the proxy: its body is dropped, the answer sent at its end.
    private var answer: (status: Int, retryAfter: String?)?
    private var requestLimit = BodyLimit.none
    private var requestBytes = 0
    private var halted = false

    init(state: HTTPProxyState) { self.state = state }

    func pair(with upstream: UpstreamSideHandler) {
        self.upstream = upstream
        upstream.client = self
        kick()
        upstream.kick()
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        isClosed = true
        self.context = nil
    }

    var canWrite: Bool { context?.channel.isWritable ?? false }

    func kick() {
        guard pendingRead, !halted, let context, upstream?.canWrite == true else { return }
        pendingRead = false
        context.read()
    }

    func read(context: ChannelHandlerContext) {
        if !halted, upstream?.canWrite == true { context.read() } else { pendingRead = true }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !halted else { return }
        switch unwrapInboundIn(data) {
        case .head(var head):
            requestLimit = .none
            requestBytes = 0
            if head.headers.contains(name: "Range") { state.locked.withLock { $0.rangedRequests += 1 } }
            switch state.fault(method: head.method.rawValue, uri: head.uri) {
            case .dropRange:
                head.headers.remove(name: "Range")
            case .dropQuery:
                head.uri = String(head.uri.prefix { $0 != "?" })
            case .status(let status, let retryAfter):
                answer = (status, retryAfter)
                return
            case .cutRequest(let range):
                let length = head.headers.first(name: "Content-Length").flatMap { Int($0) }
                requestLimit = .cut(state.offset(in: range, below: length))
            case .cutResponse(let range):
                upstream?.armResponse(.cut(0), range: range)
            case .stallResponse(let range):
                upstream?.armResponse(.stall(0), range: range)
            case .replaceStatus(let status):
                upstream?.overrideResponse(.replace(status))
            case .withholdResponse:
                upstream?.overrideResponse(.withhold)
            case nil:
                break
            }
            upstream?.send(.head(head))
        case .body(var buffer):
            if answer != nil { return }
            if case .cut(let limit) = requestLimit, requestBytes + buffer.readableBytes > limit {
                if let prefix = buffer.readSlice(length: limit - requestBytes) {
                    state.countRequest(prefix.readableBytes)
                    upstream?.send(.body(.byteBuffer(prefix)))
                }
                cutBoth()
                return
            }
            requestBytes += buffer.readableBytes
            state.countRequest(buffer.readableBytes)
            upstream?.send(.body(.byteBuffer(buffer)))
        case .end(let trailers):
            if let (status, retryAfter) = answer {
                answer = nil
                var headers = HTTPHeaders([("Content-Length", "0")])
                if let retryAfter { headers.add(name: "Retry-After", value: retryAfter) }
                let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                return
            }
            upstream?.send(.end(trailers))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        upstream?.flush()
        context.fireChannelReadComplete()
    }

    /// From the upstream side.
    func send(_ part: HTTPServerResponsePart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context?.flush() }

    func cutBoth() {
        halted = true
        let other = upstream
        upstream = nil
        other?.client = nil
        other?.close()
        close()
    }

    func close() {
        guard let context else { return }
        let channel = context.channel
        context.flush()
        channel.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        let other = upstream
        upstream = nil
        other?.client = nil
        other?.close()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { upstream?.kick() }
        context.fireChannelWritabilityChanged()
    }
}

/// The registry's connection: request parts out, response parts in.
final class UpstreamSideHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private let state: HTTPProxyState
    fileprivate weak var client: ClientSideHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var responseLimit = BodyLimit.none
    private var responseRange: ClosedRange<Int> = 0...0
    private var responseBytes = 0
    private var halted = false
    /// The next response is not passed on as the registry gave it.
    private var override: ResponseOverride?

    enum ResponseOverride {
        case replace(Int)
        case withhold
    }

    init(state: HTTPProxyState) { self.state = state }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    fileprivate func overrideResponse(_ override: ResponseOverride) { self.override = override }

    /// Handles a response part under `override`: true when it was dealt with here.
    private func overridden(_ part: HTTPClientResponsePart) -> Bool {
        guard let override else { return false }
        switch (override, part) {
        case (.replace(let status), .head):
            let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status),
                                        headers: HTTPHeaders([("Content-Length", "0")]))
            client?.send(.head(head))
        case (.replace, .end):
            self.override = nil
            client?.send(.end(nil))
            client?.flush()
        case (.withhold, .end):
            self.override = nil
            halted = true
        case (.replace, .body), (.withhold, _):
            break
        }
        return true
    }

    var canWrite: Bool { context?.channel.isWritable ?? false }

    func kick() {
        guard pendingRead, !halted, let context, client?.canWrite == true else { return }
        pendingRead = false
        context.read()
    }

    func read(context: ChannelHandlerContext) {
        if !halted, client?.canWrite == true { context.read() } else { pendingRead = true }
    }

    /// The next response gets this fault; its offset is picked once its length is known.
    fileprivate func armResponse(_ limit: BodyLimit, range: ClosedRange<Int>) {
        responseLimit = limit
        responseRange = range
    }

    func send(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context?.flush() }

    func close() {
        guard let context else { return }
        let channel = context.channel
        context.flush()
        channel.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !halted else { return }
        let part = unwrapInboundIn(data)
        if overridden(part) { return }
        switch part {
        case .head(let head):
            responseBytes = 0
            let length = head.headers.first(name: "Content-Length").flatMap { Int($0) }
            switch responseLimit {
            case .cut: responseLimit = .cut(state.offset(in: responseRange, below: length))
            case .stall: responseLimit = .stall(state.offset(in: responseRange, below: length))
            case .none: break
            }
            client?.send(.head(head))
        case .body(var buffer):
            let limit: Int?
            switch responseLimit {
            case .none: limit = nil
            case .cut(let n), .stall(let n): limit = n
            }
            if let limit, responseBytes + buffer.readableBytes > limit {
                if let prefix = buffer.readSlice(length: limit - responseBytes), prefix.readableBytes > 0 {
                    state.countResponse(prefix.readableBytes)
                    client?.send(.body(.byteBuffer(prefix)))
                }
                client?.flush()
                halted = true
                if case .cut = responseLimit { client?.cutBoth() }
                return
            }
            responseBytes += buffer.readableBytes
            state.countResponse(buffer.readableBytes)
            client?.send(.body(.byteBuffer(buffer)))
        case .end(let trailers):
            responseLimit = .none
            client?.send(.end(trailers))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        client?.flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let other = client
        client = nil
        other?.close()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { client?.kick() }
        context.fireChannelWritabilityChanged()
    }
}
