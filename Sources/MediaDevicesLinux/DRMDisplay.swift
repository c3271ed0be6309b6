import CDRM
import Display
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// Why the DRM display could not be opened.
public struct DisplayError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The board's screen through DRM/KMS (libdrm): a connector and mode (the preferred one or
/// the configured one), two dumb XRGB8888 buffers, and page flips on vertical blank (the
/// flip event is waited for, so a frame is never drawn into the buffer being scanned out:
/// no tearing). Needs DRM master (no desktop stack on the board).
///
/// Not thread-safe: the screen service serialises presents.
public final class DRMDisplay: Display, @unchecked Sendable {
    public let width: Int
    public let height: Int
    public let name: String
    private let fd: Int32
    private let crtcID: UInt32
    private let connectorID: UInt32
    private var mode: drmModeModeInfo
    private let savedCrtc: UnsafeMutablePointer<drmModeCrtc>?
    private struct Buffer {
        var handle: UInt32
        var pitch: Int
        var size: Int
        var fbID: UInt32
        var map: UnsafeMutableRawPointer
    }
    private var buffers: [Buffer] = []
    private var front = 0
    private let flipPending = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private var closed = false

    /// The connectors of `device` that have a screen, as `NAME WxH@HZ ...` lines (for errors
    /// and `--check-config`).
    public static func describeConnectors(fd: Int32) -> [String] {
        guard let res = drmModeGetResources(fd) else { return [] }
        defer { drmModeFreeResources(res) }
        var out: [String] = []
        for i in 0..<Int(res.pointee.count_connectors) {
            guard let c = drmModeGetConnector(fd, res.pointee.connectors[i]) else { continue }
            defer { drmModeFreeConnector(c) }
            let modes = (0..<Int(c.pointee.count_modes)).map { m -> String in
                let mi = c.pointee.modes[m]
                return "\(mi.hdisplay)x\(mi.vdisplay)@\(mi.vrefresh)"
            }
            out.append("\(connectorName(c)) \(c.pointee.connection == DRM_MODE_CONNECTED ? "connected" : "disconnected") \(modes.prefix(6).joined(separator: " "))")
        }
        return out
    }

    static func connectorName(_ c: UnsafeMutablePointer<drmModeConnector>) -> String {
        let type = drmModeGetConnectorTypeName(c.pointee.connector_type).map { String(cString: $0) } ?? "Unknown"
        return "\(type)-\(c.pointee.connector_type_id)"
    }

    /// Opens `device`, picks the connector (`connector` by name, else the first connected)
    /// and the mode (`width`×`height`[@`refreshHz`], else the preferred one) and shows black.
    public init(device: String, connector wanted: String?, width wantW: Int?, height wantH: Int?, refreshHz wantHz: Int?) throws(DisplayError) {
        let fd = open(device, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw DisplayError("\(device): cannot open: \(String(cString: strerror(errno)))") }
        self.fd = fd
        var ok = false
        defer { if !ok { Glibc.close(fd) } }
        guard let res = drmModeGetResources(fd) else { throw DisplayError("\(device): not a KMS device (no mode resources)") }
        defer { drmModeFreeResources(res) }
        var chosen: UnsafeMutablePointer<drmModeConnector>?
        for i in 0..<Int(res.pointee.count_connectors) {
            guard let c = drmModeGetConnector(fd, res.pointee.connectors[i]) else { continue }
            let name = DRMDisplay.connectorName(c)
            let matches = wanted.map { $0 == name } ?? (c.pointee.connection == DRM_MODE_CONNECTED && c.pointee.count_modes > 0)
            if matches && chosen == nil { chosen = c } else { drmModeFreeConnector(c) }
        }
        guard let conn = chosen else {
            let list = DRMDisplay.describeConnectors(fd: fd).joined(separator: "; ")
            throw DisplayError("\(device): " + (wanted.map { "no connector named \($0)" } ?? "no connected screen") + " (connectors: \(list.isEmpty ? "none" : list))")
        }
        defer { drmModeFreeConnector(conn) }
        let connName = DRMDisplay.connectorName(conn)
        guard conn.pointee.connection == DRM_MODE_CONNECTED, conn.pointee.count_modes > 0 else {
            throw DisplayError("\(device): connector \(connName) has no screen connected")
        }
        let modes = (0..<Int(conn.pointee.count_modes)).map { conn.pointee.modes[$0] }
        var pick: drmModeModeInfo?
        if let w = wantW, let h = wantH {
            pick = modes.filter { Int($0.hdisplay) == w && Int($0.vdisplay) == h && (wantHz.map { Int($0) } == nil || Int($0.vrefresh) == wantHz!) }
                .max { $0.vrefresh < $1.vrefresh }
            guard pick != nil else {
                let list = modes.map { "\($0.hdisplay)x\($0.vdisplay)@\($0.vrefresh)" }.joined(separator: " ")
                throw DisplayError("\(device) \(connName): no mode \(w)x\(h)\(wantHz.map { "@\($0)" } ?? "") (it offers \(list))")
            }
        } else {
            pick = modes.first { withUnsafePointer(to: $0) { cdrm_mode_preferred($0) } != 0 } ?? modes[0]
        }
        mode = pick!
        // The CRTC: the one the connector's encoder drives now, else one the encoders can use.
        var crtc: UInt32 = 0
        if conn.pointee.encoder_id != 0, let enc = drmModeGetEncoder(fd, conn.pointee.encoder_id) {
            crtc = enc.pointee.crtc_id
            drmModeFreeEncoder(enc)
        }
        if crtc == 0 {
            search: for e in 0..<Int(conn.pointee.count_encoders) {
                guard let enc = drmModeGetEncoder(fd, conn.pointee.encoders[e]) else { continue }
                defer { drmModeFreeEncoder(enc) }
                for j in 0..<Int(res.pointee.count_crtcs) where enc.pointee.possible_crtcs & (1 << UInt32(j)) != 0 {
                    crtc = res.pointee.crtcs[j]
                    break search
                }
            }
        }
        guard crtc != 0 else { throw DisplayError("\(device) \(connName): no CRTC can drive this connector") }
        crtcID = crtc
        connectorID = conn.pointee.connector_id
        width = Int(mode.hdisplay)
        height = Int(mode.vdisplay)
        name = "drm \(device) \(connName) \(width)x\(height)@\(mode.vrefresh)"
        savedCrtc = drmModeGetCrtc(fd, crtc)
        flipPending.pointee = 0
        for _ in 0..<2 {
            var handle: UInt32 = 0, pitch: UInt32 = 0, size: UInt64 = 0, offset: UInt64 = 0, fbID: UInt32 = 0
            guard cdrm_create_dumb(fd, UInt32(width), UInt32(height), &handle, &pitch, &size) == 0 else {
                throw DisplayError("\(device): cannot create a \(width)x\(height) dumb buffer: \(String(cString: strerror(errno)))")
            }
            guard drmModeAddFB(fd, UInt32(width), UInt32(height), 24, 32, pitch, handle, &fbID) == 0 else {
                cdrm_destroy_dumb(fd, handle)
                throw DisplayError("\(device): cannot add a framebuffer: \(String(cString: strerror(errno)))")
            }
            guard cdrm_map_dumb(fd, handle, &offset) == 0, let map = cdrm_mmap(fd, size, offset) else {
                drmModeRmFB(fd, fbID)
                cdrm_destroy_dumb(fd, handle)
                throw DisplayError("\(device): cannot map a dumb buffer: \(String(cString: strerror(errno)))")
            }
            memset(map, 0, Int(size))
            buffers.append(Buffer(handle: handle, pitch: Int(pitch), size: Int(size), fbID: fbID, map: map))
        }
        var connID = connectorID
        guard drmModeSetCrtc(fd, crtcID, buffers[0].fbID, 0, 0, &connID, 1, &mode) == 0 else {
            let why = String(cString: strerror(errno))
            releaseBuffers()
            throw DisplayError("\(device) \(connName): cannot set mode \(width)x\(height): \(why) (is another program the DRM master?)")
        }
        ok = true
    }

    deinit {
        close()
        flipPending.deallocate()
    }

    private func releaseBuffers() {
        for b in buffers {
            munmap(b.map, b.size)
            drmModeRmFB(fd, b.fbID)
            cdrm_destroy_dumb(fd, b.handle)
        }
        buffers.removeAll()
    }

    /// Copies `frame` into the back buffer, flips on the next vblank and waits for the flip
    /// event (at most 100 ms; a driver without flip events gets a direct mode set).
    public func present(_ frame: Framebuffer) -> Instant? {
        guard !closed, buffers.count == 2 else { return nil }
        let back = 1 - front
        let b = buffers[back]
        let rows = min(height, frame.height), cols = min(width, frame.width)
        frame.pixels.withUnsafeBufferPointer { px in
            for y in 0..<rows {
                (b.map + y * b.pitch).copyMemory(from: px.baseAddress! + y * frame.width, byteCount: cols * 4)
            }
        }
        flipPending.pointee = 1
        if drmModePageFlip(fd, crtcID, b.fbID, cdrm_flip_event_flag(), flipPending) != 0 {
            flipPending.pointee = 0
            var connID = connectorID
            guard drmModeSetCrtc(fd, crtcID, b.fbID, 0, 0, &connID, 1, &mode) == 0 else { return nil }
            front = back
            return Instant.now()
        }
        let deadline = Instant.now() + .milliseconds(100)
        while flipPending.pointee != 0 {
            let now = Instant.now()
            if now >= deadline { break }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(1, (deadline - now).milliseconds))
            if poll(&p, 1, ms) > 0 { _ = cdrm_handle_events(fd, flipPending) }
        }
        front = back
        return Instant.now()
    }

    public func close() {
        guard !closed else { return }
        closed = true
        if let s = savedCrtc {
            var connID = connectorID
            if s.pointee.buffer_id != 0 {
                _ = drmModeSetCrtc(fd, s.pointee.crtc_id, s.pointee.buffer_id, s.pointee.x, s.pointee.y, &connID, 1, &s.pointee.mode)
            }
            drmModeFreeCrtc(s)
        }
        releaseBuffers()
        Glibc.close(fd)
    }
}
