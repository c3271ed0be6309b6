import Codecs

/// Draws I420 pictures into a framebuffer: scaled to fit a rectangle with the aspect kept
/// (the rest black), converted from BT.601 limited range to RGB through tables.
///
/// Nearest-neighbour with 16.16 fixed-point steps: cheap enough for 720p30 on the board's
/// CPU, and a video phone's picture is watched from across a room. Not thread-safe.
public struct PictureScaler {
    private var xMap: [Int32] = []
    private var mappedFor: (Int, Int) = (0, 0)
    // Tables: 1.164·(Y−16), 1.596·(V−128), 0.391·(U−128), 0.813·(V−128), 2.018·(U−128), in 1/256.
    private let yTable: [Int32]
    private let rv: [Int32], gu: [Int32], gv: [Int32], bu: [Int32]

    public init() {
        yTable = (0..<256).map { Int32((1.164 * Double($0 - 16) * 256).rounded()) }
        rv = (0..<256).map { Int32((1.596 * Double($0 - 128) * 256).rounded()) }
        gu = (0..<256).map { Int32((0.391 * Double($0 - 128) * 256).rounded()) }
        gv = (0..<256).map { Int32((0.813 * Double($0 - 128) * 256).rounded()) }
        bu = (0..<256).map { Int32((2.018 * Double($0 - 128) * 256).rounded()) }
    }

    /// Where a `width` × `height` picture goes inside `area` with its aspect kept: as large
    /// as fits, centred (letterbox or pillarbox).
    public static func fit(width: Int, height: Int, in area: Rect) -> Rect {
        guard width > 0, height > 0, !area.isEmpty else { return Rect(x: area.x, y: area.y, width: 0, height: 0) }
        // Compare aspects in integers: width/height vs area.width/area.height.
        if width * area.height >= area.width * height {
            let h = max(1, area.width * height / width)
            return Rect(x: area.x, y: area.y + (area.height - h) / 2, width: area.width, height: h)
        } else {
            let w = max(1, area.height * width / height)
            return Rect(x: area.x + (area.width - w) / 2, y: area.y, width: w, height: area.height)
        }
    }

    /// Draws `picture` into `fb` fitted to `area`; with `letterbox` the bars inside `area`
    /// are painted black. Returns where the picture went.
    @discardableResult
    public mutating func draw(_ picture: I420Picture, into fb: inout Framebuffer, area: Rect, letterbox: Bool = true) -> Rect {
        let target = PictureScaler.fit(width: picture.width, height: picture.height, in: area)
        if letterbox { fb.fill(area, color: Colour.black) }
        let visible = target.clipped(to: fb.bounds)
        guard !visible.isEmpty, !picture.isEmpty else { return target }
        let pw = picture.width, ph = picture.height, cw = picture.chromaWidth
        if mappedFor != (pw, target.width) || xMap.count != target.width {
            let step = (pw << 16) / target.width
            xMap = (0..<target.width).map { Int32(min(pw - 1, ($0 * step) >> 16)) }
            mappedFor = (pw, target.width)
        }
        let stepY = (ph << 16) / target.height
        let fbw = fb.width
        xMap.withUnsafeBufferPointer { xm in
        yTable.withUnsafeBufferPointer { yt in
        rv.withUnsafeBufferPointer { rv in
        gu.withUnsafeBufferPointer { gu in
        gv.withUnsafeBufferPointer { gv in
        bu.withUnsafeBufferPointer { bu in
        picture.bytes.withUnsafeBufferPointer { src in
        fb.pixels.withUnsafeMutableBufferPointer { dst in
            let yPlane = src.baseAddress!
            let uPlane = yPlane + pw * ph
            let vPlane = uPlane + cw * picture.chromaHeight
            for row in visible.y..<visible.maxY {
                let sy = min(ph - 1, ((row - target.y) * stepY) >> 16)
                let yRow = yPlane + sy * pw
                let uRow = uPlane + (sy >> 1) * cw
                let vRow = vPlane + (sy >> 1) * cw
                let out = dst.baseAddress! + row * fbw
                for col in visible.x..<visible.maxX {
                    let sx = Int(xm[col - target.x])
                    let y = yt[Int(yRow[sx])]
                    let u = Int(uRow[sx >> 1]), v = Int(vRow[sx >> 1])
                    let r = clamp((y + rv[v]) >> 8)
                    let g = clamp((y - gu[u] - gv[v]) >> 8)
                    let b = clamp((y + bu[u]) >> 8)
                    out[col] = UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b)
                }
            }
        }}}}}}}}
        return target
    }

    @inline(__always) private func clamp(_ v: Int32) -> Int32 { v < 0 ? 0 : (v > 255 ? 255 : v) }
}
