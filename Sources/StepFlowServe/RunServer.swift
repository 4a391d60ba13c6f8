import Dispatch
import NIOCore
import NIOHTTP1
import NIOPosix

/// The HTTP side of `serve`, on SwiftNIO: HTTP/1.1 with keep-alive, each request answered by
/// `RunRoutes` off the event loop (a route reads SQLite and log files). Methods other than GET and
/// HEAD are refused as soon as their head arrives, before any body is read.
package enum RunServer {
    package typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// Binds `host:port` (port 0: any free one), calls `bound` with the address it got, and serves
    /// until the process ends.
    /// - Throws: what binding threw (the port is taken, the address is not this host's).
    package static func run(routes: RunRoutes, host: String, port: Int, bound: @Sendable (String, Int) -> Void) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        bound(host, server.channel.localAddress?.port ?? port)
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask { await serve(connection, routes) }
                }
            }
        }
    }

    private static func serve(_ connection: Connection, _ routes: RunRoutes) async {
        // A connection that breaks (the browser closed it) ends here; the server goes on.
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let h):
                    guard h.method == .GET || h.method == .HEAD else {
                        try await write(routes.respond(ServeRequest(method: h.method.rawValue, target: h.uri)), for: h, keepAlive: false, outbound)
                        return
                    }
                    head = h
                case .body:
                    continue
                case .end:
                    guard let h = head else { continue }
                    head = nil
                    let request = ServeRequest(method: h.method.rawValue, target: h.uri, headers: h.headers.map { ($0.name, $0.value) })
                    let response = await withCheckedContinuation { done in
                        DispatchQueue.global(qos: .background).async {
                            ViewerPriority.lowerThisThread()
                            done.resume(returning: routes.respond(request))
                        }
                    }
                    try await write(response, for: h, keepAlive: h.isKeepAlive, outbound)
                    if !h.isKeepAlive { return }
                }
            }
        }
    }

    private static func write(_ response: ServeResponse, for head: HTTPRequestHead, keepAlive: Bool,
                              _ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>) async throws {
        var headers = HTTPHeaders(response.headers)
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        try await outbound.write(.head(HTTPResponseHead(version: head.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)))
        if head.method != .HEAD && !response.body.isEmpty {
            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body))))
        }
        try await outbound.write(.end(nil))
    }
}
