import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One request received by a `TestHTTPServer`.
public struct TestHTTPRequest: Sendable {
    public var method: String
    /// The request target as sent, e.g. `/token?service=x&scope=a&scope=b`.
    public var uri: String
    /// The path part of `uri`, percent-decoded.
    public var path: String
    /// Query parameters in order, repeated names kept, decoded (`+` is a space).
    public var queryItems: [(name: String, value: String)]
    /// Header fields in order, as received.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(
        method: String, uri: String, headers: [(String, String)] = [], body: [UInt8] = []
    ) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        let (path, query) = Self.split(uri)
        self.path = path
        self.queryItems = query
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }

    /// Every value of header `name` (case-insensitive).
    public func headerValues(_ name: String) -> [String] {
        headers.filter { $0.0.caseInsensitiveCompare(name) == .orderedSame }.map(\.1)
    }

    /// The first value of query parameter `name`.
    public func query(_ name: String) -> String? {
        queryItems.first { $0.name == name }?.value
    }

    /// Every value of query parameter `name`, in order.
    public func queryValues(_ name: String) -> [String] {
        queryItems.filter { $0.name == name }.map(\.value)
    }

    public var bodyString: String { String(decoding: body, as: UTF8.self) }

    static func split(_ uri: String) -> (String, [(name: String, value: String)]) {
        let pathPart: Substring
        let queryPart: Substring?
        if let q = uri.firstIndex(of: "?") {
            pathPart = uri[..<q]
            queryPart = uri[uri.index(after: q)...]
        } else {
            pathPart = Substring(uri)
            queryPart = nil
        }
        let path = String(pathPart).removingPercentEncoding ?? String(pathPart)
        var items: [(name: String, value: String)] = []
        if let queryPart {
            items = parseForm(String(queryPart))
        }
        return (path, items)
    }

    /// Parses `a=1&b=2&a=3` (application/x-www-form-urlencoded).
    public static func parseForm(_ text: String) -> [(name: String, value: String)] {
        var items: [(name: String, value: String)] = []
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring
            let value: Substring
            if let eq = pair.firstIndex(of: "=") {
                name = pair[..<eq]
                value = pair[pair.index(after: eq)...]
            } else {
                name = pair
                value = ""
            }
            items.append((decodeFormComponent(name), decodeFormComponent(value)))
        }
        return items
    }

    static func decodeFormComponent(_ s: Substring) -> String {
        let spaced = s.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }
}

/// The answer a `TestHTTPServer` handler gives.
public struct TestHTTPResponse: Sendable {
    public var status: Int
    /// Header fields; `Content-Length` is added when absent.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int = 200, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public init(status: Int = 200, headers: [(String, String)] = [], text: String) {
        self.init(status: status, headers: headers, body: Array(text.utf8))
    }

    /// A JSON body with `Content-Type: application/json`.
    public static func json(
        _ json: String, status: Int = 200, headers: [(String, String)] = []
    ) -> TestHTTPResponse {
        TestHTTPResponse(
            status: status, headers: [("Content-Type", "application/json")] + headers,
            body: Array(json.utf8))
    }

    public static func notFound() -> TestHTTPResponse {
        TestHTTPResponse(status: 404, text: "not found\n")
    }
}

/// A small HTTP/1.1 server on 127.0.0.1 (ephemeral port, plain HTTP) whose answers come
/// from a closure. Keep-alive, pipelining, request bodies and `Expect: 100-continue` work.
/// Every request is recorded in `requests`.
public final class TestHTTPServer: Sendable {
    public typealias Handler = @Sendable (TestHTTPRequest) -> TestHTTPResponse

    final class State: Sendable {
        let handler: TSLocked<Handler>
        let requests = TSLocked<[TestHTTPRequest]>([])
        let children = TSLocked<[ObjectIdentifier: any Channel]>([:])

        init(handler: @escaping Handler) {
            self.handler = TSLocked(handler)
        }

        func handle(_ request: TestHTTPRequest) -> TestHTTPResponse {
            requests.withLock { $0.append(request) }
            let handler = self.handler.current
            return handler(request)
        }
    }

    private let state: State
    private let channel: any Channel
    /// The port the server listens on (127.0.0.1).
    public let port: Int

    private init(state: State, channel: any Channel, port: Int) {
        self.state = state
        self.channel = channel
        self.port = port
    }

    /// `http://127.0.0.1:PORT`.
    public var baseURL: URL {
        URL(string: "http://127.0.0.1:\(port)") ?? URL(fileURLWithPath: "/")
    }

    /// `127.0.0.1:PORT`.
    public var host: String { "127.0.0.1:\(port)" }

    /// Every request received so far, in arrival order.
    public var requests: [TestHTTPRequest] { state.requests.current }

    /// Forgets the recorded requests.
    public func clearRequests() { state.requests.withLock { $0.removeAll() } }

    /// Replaces the handler for the requests still to come.
    public func setHandler(_ handler: @escaping Handler) {
        state.handler.withLock { $0 = handler }
    }

    /// Starts a server on 127.0.0.1 with an ephemeral port.
    public static func start(handler: @escaping Handler) async throws -> TestHTTPServer {
        let state = State(handler: handler)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                state.children.withLock { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in
                    _ = state.children.withLock { $0.removeValue(forKey: id) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(state: state))
                }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        guard let port = channel.localAddress?.port else {
            try? await channel.close()
            throw TestSupportError("TestHTTPServer: no local port")
        }
        return TestHTTPServer(state: state, channel: channel, port: port)
    }

    /// Stops listening and closes every open connection.
    public func shutdown() async throws {
        do {
            try await channel.close()
        } catch ChannelError.alreadyClosed {
        }
        let children = state.children.withLock { children -> [any Channel] in
            let all = Array(children.values)
            children.removeAll()
            return all
        }
        for child in children {
            try? await child.close()
        }
    }

    deinit {
        channel.close(promise: nil)
        let children = state.children.withLock { children -> [any Channel] in
            let all = Array(children.values)
            children.removeAll()
            return all
        }
        for child in children { child.close(promise: nil) }
    }
}

final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: TestHTTPServer.State
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(state: TestHTTPServer.State) {
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = []
            if head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                let cont = HTTPResponseHead(version: head.version, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(cont)), promise: nil)
            }
        case .body(var buffer):
            if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body.append(contentsOf: bytes)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let request = TestHTTPRequest(
                method: head.method.rawValue, uri: head.uri,
                headers: head.headers.map { ($0.name, $0.value) }, body: body)
            body = []
            let response = state.handle(request)
            respond(context: context, requestHead: head, response: response)
        }
    }

    private func respond(
        context: ChannelHandlerContext, requestHead: HTTPRequestHead, response: TestHTTPResponse
    ) {
        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        let bodyAllowed = !(response.status == 204 || response.status == 304 || (100..<200).contains(response.status))
        if bodyAllowed && !headers.contains(name: "content-length") && !headers.contains(name: "transfer-encoding") {
            headers.add(name: "Content-Length", value: String(response.body.count))
        }
        let keepAlive = requestHead.isKeepAlive
            && !headers["connection"].contains(where: { $0.lowercased() == "close" })
        if !keepAlive && !headers.contains(name: "connection") {
            headers.add(name: "Connection", value: "close")
        }
        let responseHead = HTTPResponseHead(
            version: requestHead.version, status: HTTPResponseStatus(statusCode: response.status),
            headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if bodyAllowed && requestHead.method != .HEAD && !response.body.isEmpty {
            let buffer = context.channel.allocator.buffer(bytes: response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let channel = context.channel
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
