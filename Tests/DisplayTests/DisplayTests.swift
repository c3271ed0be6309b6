import Codecs
import CZlib
import Display
import NetworkCore
import Testing

func solidPicture(width: Int, height: Int, y: UInt8, u: UInt8 = 128, v: UInt8 = 128) -> I420Picture {
    var p = I420Picture(width: width, height: height)
    let luma = width * height
    for i in 0..<p.bytes.count { p.bytes[i] = i < luma ? y : (i < luma + p.chromaWidth * p.chromaHeight ? u : v) }
    return p
}

@Suite struct ScalerTests {
    @Test func fitKeepsAspectAndCentres() {
        let screen = Rect(x: 0, y: 0, width: 1280, height: 720)
        #expect(PictureScaler.fit(width: 640, height: 360, in: screen) == screen)
        // 4:3 on 16:9: pillarbox.
        #expect(PictureScaler.fit(width: 640, height: 480, in: screen) == Rect(x: 160, y: 0, width: 960, height: 720))
        // 16:9 on 4:3: letterbox.
        #expect(PictureScaler.fit(width: 1280, height: 720, in: Rect(x: 0, y: 0, width: 800, height: 600)) == Rect(x: 0, y: 75, width: 800, height: 450))
        #expect(PictureScaler.fit(width: 0, height: 0, in: screen).isEmpty)
    }

    @Test func drawsFittedWithBlackBarsAndConvertsColour() {
        var fb = Framebuffer(width: 160, height: 90, color: 0x123456)
        var s = PictureScaler()
        // White (Y 235) 4:3 picture on a 16:9 screen.
        let placed = s.draw(solidPicture(width: 40, height: 30, y: 235), into: &fb, area: fb.bounds)
        #expect(placed == Rect(x: 20, y: 0, width: 120, height: 90))
        #expect(fb[0, 45] == Colour.black)
        #expect(fb[159, 45] == Colour.black)
        let c = fb[80, 45]
        #expect(Colour.red(c) >= 250 && Colour.green(c) >= 250 && Colour.blue(c) >= 250)
        // Pure red in BT.601: Y 81, U 90, V 240.
        s.draw(solidPicture(width: 16, height: 9, y: 81, u: 90, v: 240), into: &fb, area: fb.bounds)
        let r = fb[80, 45]
        #expect(Colour.red(r) > 240 && Colour.green(r) < 20 && Colour.blue(r) < 20)
    }

    @Test func scalesAPatternWithoutDisplacingIt() {
        // Left half dark, right half bright: the boundary stays in the middle when scaled up.
        var pic = I420Picture(width: 64, height: 36)
        for y in 0..<36 { for x in 0..<64 { pic.bytes[y * 64 + x] = x < 32 ? 16 : 235 } }
        for i in (64 * 36)..<pic.bytes.count { pic.bytes[i] = 128 }
        var fb = Framebuffer(width: 640, height: 360)
        var s = PictureScaler()
        s.draw(pic, into: &fb, area: fb.bounds)
        #expect(Colour.green(fb[310, 100]) < 10)
        #expect(Colour.green(fb[330, 100]) > 245)
    }
}

@Suite struct FontAndScreenTests {
    @Test func textCoversOnlyItsRegion() {
        var fb = Framebuffer(width: 200, height: 60)
        let r = BitmapFont.draw("HI 7", into: &fb, x: 10, y: 5, scale: 3, color: Colour.white)
        #expect(r == Rect(x: 10, y: 5, width: (4 * 6 - 1) * 3, height: 21))
        var inside = 0, outside = 0
        for y in 0..<fb.height { for x in 0..<fb.width where fb[x, y] == Colour.white {
            if x >= r.x && x < r.maxX && y >= r.y && y < r.maxY { inside += 1 } else { outside += 1 }
        } }
        #expect(inside > 50)
        #expect(outside == 0)
        // The space draws nothing: its cell is empty.
        for y in r.y..<r.maxY { for x in (10 + 12 * 3)..<(10 + 17 * 3) { #expect(fb[x, y] == 0) } }
    }

    @Test func glyphsDifferAndLowercaseIsCapital() {
        #expect(BitmapFont.rows(for: "a") == BitmapFont.rows(for: "A"))
        #expect(BitmapFont.rows(for: "A") != BitmapFont.rows(for: "B"))
        #expect(BitmapFont.rows(for: " ") == nil)
    }

    @Test func screensShowReadableTextRegions() {
        var fb = Framebuffer(width: 1280, height: 720)
        var r = ScreenRenderer()
        r.render(.idle(deviceName: "kitchen"), faults: [], remote: nil, local: nil, into: &fb)
        #expect(r.regions.map(\.text) == ["kitchen", "ready"])
        // Readable across a room: the title is at least 60 px tall on a 720-line screen.
        #expect(r.regions[0].rect.height >= 60)
        #expect(r.regions[0].rect.clipped(to: fb.bounds) == r.regions[0].rect)
        r.render(.ringing(peer: "grandma"), faults: [], remote: nil, local: nil, into: &fb)
        #expect(r.regions.map(\.text) == ["grandma", "is calling"])
        #expect(fb[5, 5] == Colour.ringing)
        r.render(.idle(deviceName: "kitchen"), faults: [.noCamera, .noNetwork], remote: nil, local: nil, into: &fb)
        #expect(r.regions.map(\.text) == ["kitchen", "no camera, no network"])
        #expect(fb[5, 5] == Colour.fault)
    }

    @Test func callScreenFillsWithTheFarEndAndInsetsTheCamera() {
        var fb = Framebuffer(width: 640, height: 360)
        var r = ScreenRenderer()
        let far = solidPicture(width: 320, height: 180, y: 81, u: 90, v: 240)   // red
        let near = solidPicture(width: 160, height: 90, y: 145, u: 54, v: 34)   // green
        r.render(.inCall(peer: "bob"), faults: [], remote: far, local: near, into: &fb)
        #expect(Colour.red(fb[10, 10]) > 240 && Colour.green(fb[10, 10]) < 20)
        let inset = ScreenRenderer.insetArea(screenWidth: 640, screenHeight: 360)
        let mid = fb[inset.x + inset.width / 2, inset.y + inset.height / 2]
        #expect(Colour.green(mid) > 200 && Colour.red(mid) < 20)
    }

    @Test func stateBlanksWakesAndPausesVideo() {
        let t0 = Instant(nanoseconds: 1_000_000_000)
        var s = ScreenState(deviceName: "hall", blankAfter: .seconds(60), pauseAfter: .seconds(2), now: t0)
        #expect(s.content(now: t0 + .seconds(59)) == .idle(deviceName: "hall"))
        #expect(s.content(now: t0 + .seconds(60)) == .blank)
        s.activity(now: t0 + .seconds(61))
        #expect(s.content(now: t0 + .seconds(62)) == .idle(deviceName: "hall"))
        // A ring wakes it.
        #expect(s.content(now: t0 + .seconds(130)) == .blank)
        s.setPhase(.ringing("ann"), now: t0 + .seconds(130))
        #expect(s.content(now: t0 + .seconds(131)) == .ringing(peer: "ann"))
        s.setPhase(.inCall("ann"), now: t0 + .seconds(132))
        #expect(s.content(now: t0 + .seconds(200)) == .inCall(peer: "ann"))   // no video yet: no pause
        s.videoShown(now: t0 + .seconds(200))
        #expect(s.content(now: t0 + .milliseconds(201_900)) == .inCall(peer: "ann"))
        #expect(s.content(now: t0 + .seconds(202)) == .videoPaused(peer: "ann"))
        s.videoShown(now: t0 + .seconds(203))
        #expect(s.content(now: t0 + .seconds(203)) == .inCall(peer: "ann"))
        // Never blanks in a call, and with blankAfter nil never at all.
        s.setPhase(.idle, now: t0 + .seconds(300))
        s.blankAfter = nil
        #expect(s.content(now: t0 + .seconds(9000)) == .idle(deviceName: "hall"))
    }
}

@Suite struct PNGTests {
    /// Parses the PNG back with zlib: chunk CRCs, header, inflated scanlines.
    func readBack(_ png: [UInt8]) throws -> (Int, Int, [UInt8]) {
        #expect(Array(png.prefix(8)) == PNGWriter.signature)
        var i = 8
        var w = 0, h = 0
        var idat: [UInt8] = []
        func be(_ at: Int) -> Int { Int(png[at]) << 24 | Int(png[at + 1]) << 16 | Int(png[at + 2]) << 8 | Int(png[at + 3]) }
        while i < png.count {
            let len = be(i)
            let type = String(decoding: png[(i + 4)..<(i + 8)], as: UTF8.self)
            let body = Array(png[(i + 8)..<(i + 8 + len)])
            let crc = png[(i + 4)..<(i + 8 + len)].withContiguousStorageIfAvailable { crc32(0, $0.baseAddress, uInt($0.count)) }
                ?? Array(png[(i + 4)..<(i + 8 + len)]).withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
            #expect(UInt(be(i + 8 + len)) == UInt(crc), "CRC of \(type)")
            if type == "IHDR" { w = be(i + 8); h = be(i + 12); #expect(Array(body[8...]) == [8, 2, 0, 0, 0]) }
            if type == "IDAT" { idat += body }
            i += 12 + len
        }
        var out = [UInt8](repeating: 0, count: (1 + w * 3) * h)
        var n = uLongf(out.count)
        let rc = out.withUnsafeMutableBufferPointer { o in idat.withUnsafeBufferPointer { uncompress(o.baseAddress, &n, $0.baseAddress, uLong($0.count)) } }
        #expect(rc == Z_OK)
        #expect(Int(n) == out.count)
        return (w, h, out)
    }

    @Test func roundTripsThroughZlib() throws {
        var fb = Framebuffer(width: 37, height: 11)
        for y in 0..<11 { for x in 0..<37 { fb[x, y] = Colour.rgb(UInt8(x * 6), UInt8(y * 20), UInt8((x + y) % 256)) } }
        let (w, h, raw) = try readBack(PNGWriter.encode(fb))
        #expect(w == 37 && h == 11)
        for y in 0..<11 {
            #expect(raw[y * (1 + 37 * 3)] == 0)
            for x in 0..<37 {
                let o = y * (1 + 37 * 3) + 1 + x * 3
                #expect(Colour.rgb(raw[o], raw[o + 1], raw[o + 2]) == fb[x, y])
            }
        }
    }
}
