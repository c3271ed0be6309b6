import CALSA
import CGPIOD
import CV4L2

/// A board library that would not load: its soname, its Debian package and the loader's
/// reason, in one sentence.
public struct LibraryError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// The board-only C libraries, loaded with `dlopen` the first time the config uses them
/// (Sources/CLoader): the simulator, and boards without a camera or GPIO, never map them.
/// `VIDEOPHONE_DLOPEN_<TAG>` (ASOUND, V4L2, GPIOD, AVCODEC, APM) replaces a soname, for tests.
public enum BoardLibrary: String, Sendable, CaseIterable {
    /// libasound: ALSA microphones and speakers.
    case alsa
    /// libv4l2 (with libv4lconvert and libjpeg): V4L2 cameras. The mem2mem codecs need none.
    case v4l2
    /// libgpiod: the call button and LED.
    case gpiod

    /// The soname opened (after the environment's override).
    public var soname: String {
        switch self {
        case .alsa: String(cString: calsa_soname())
        case .v4l2: String(cString: cv4l2_soname())
        case .gpiod: String(cString: cgpiod_soname())
        }
    }

    /// Loads the library once; after a failure, the next call tries again (a package
    /// installed meanwhile is picked up by the idle probe).
    public func load() throws(LibraryError) {
        var err = [CChar](repeating: 0, count: 400)
        let r: Int32 = switch self {
        case .alsa: calsa_load(&err, err.count)
        case .v4l2: cv4l2_load(&err, err.count)
        case .gpiod: cgpiod_load(&err, err.count)
        }
        guard r == 0 else {
            throw LibraryError(description: String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }
}
