import NetworkCore
import STUN
import TURN

/// A TURN server to allocate a relayed candidate on.
public struct TURNServer: Sendable, Equatable {
    public enum Transport: String, Sendable { case udp, tcp, tls }
    public var address: TransportAddress
    public var transport: Transport
    public var username: String
    public var password: String
    /// TLS: a PEM file of the CAs that may sign the server's certificate (a private
    /// server's CA or its self-signed certificate); nil: the system's CA store.
    public var caFile: String?
    /// TLS: the DNS name the server's certificate must carry (and SNI); nil: the
    /// certificate must carry the server's IP address instead.
    public var serverName: String?
    /// TLS: check the server's certificate and name (on unless a test turns it off).
    public var verifyCertificate = true
    public init(address: TransportAddress, transport: Transport, username: String, password: String,
                caFile: String? = nil, serverName: String? = nil) {
        self.address = address; self.transport = transport; self.username = username; self.password = password
        self.caFile = caFile; self.serverName = serverName
    }
}

/// Where an ICE local candidate sends from: a host socket, or a TURN allocation.
enum CandidatePath {
    case socket(Int)
    case relay(RelayAllocation)
}

/// One TURN allocation and the client transport to its server (a host UDP socket, or a
/// TCP/TLS connection). The transport thread owns the allocation's life; media threads
/// send through it too, hence the lock around the TURN state, the link and the buffer.
final class RelayAllocation: @unchecked Sendable {
    let lock = Lock()
    var client: TURNClient
    let server: TURNServer
    /// UDP: the host socket the allocation was made from (nil over TCP/TLS).
    let socket: UDPSocket?
    let socketIndex: Int?
    /// TCP/TLS: the connection to the server.
    let link: StreamLink?
    var candidateIndex: Int?
    private var wrapBuffer: [UInt8] = []
    private var reported = false

    init(server: TURNServer, socket: UDPSocket, socketIndex: Int) {
        self.server = server
        self.socket = socket
        self.socketIndex = socketIndex
        self.link = nil
        self.client = TURNClient(server: server.address, username: server.username, password: server.password)
        wrapBuffer.reserveCapacity(1600)
    }

    init(server: TURNServer, link: StreamLink) {
        self.server = server
        self.socket = nil
        self.socketIndex = nil
        self.link = link
        self.client = TURNClient(server: server.address, username: server.username, password: server.password)
        client.reliableTransport = true
        wrapBuffer.reserveCapacity(1600)
    }

    /// Sends raw bytes to the TURN server. Call with the lock held.
    private func toServer(_ bytes: [UInt8]) {
        if let link { link.write(bytes) } else { socket?.send(bytes, to: server.address) }
    }

    /// Sends raw bytes to the TURN server.
    func sendToServer(_ bytes: [UInt8]) { lock.withLock { toServer(bytes) } }

    /// Sends a datagram to `peer` through the relay, asking for a permission and a
    /// channel the first time.
    func send(_ payload: UnsafeRawBufferPointer, to peer: TransportAddress, now: Instant = Instant.now()) {
        lock.withLock {
            for r in client.addPeer(peer, now: now) { toServer(r) }
            client.wrap(payload, to: peer, into: &wrapBuffer, pad: link != nil)
            toServer(wrapBuffer)
        }
    }

    func send(_ bytes: [UInt8], to peer: TransportAddress) {
        bytes.withUnsafeBytes { send($0, to: peer) }
    }

    /// Frames the stream link dropped (its output was full) not yet reported.
    func takeNewLinkDrops() -> Int {
        lock.withLock {
            guard let link else { return 0 }
            defer { reportedLinkDrops = link.droppedFrames }
            return link.droppedFrames - reportedLinkDrops
        }
    }
    private var reportedLinkDrops = 0

    /// True once, to log an allocation failure a single time per call.
    func shouldReport() -> Bool { lock.withLock { defer { reported = true }; return !reported } }
}
