#!/bin/sh
# The Swift SDK bundle: swift-sdk.json and toolset.json pointing at the arm64 sysroot, in a
# folder given to `swift build --swift-sdks-path` (nothing is installed into the compiler).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"
vp_trap_errors

vp_begin "sdk bundle" "$VP_SDK_NAME in $VP_SDK_DIR"
[ -f "$VP_SYSROOT/.videophone-stamp" ] || vp_fail "no sysroot at $VP_SYSROOT (run toolchain/cross/build-sysroot.sh)"
bundle="$VP_SDK_DIR/$VP_SDK_NAME.artifactbundle"
variant="$bundle/aarch64-unknown-linux-gnu"
hash=$(vp_hash sdk-v3 "$(cat "$VP_SYSROOT/.videophone-stamp")")
if vp_stamp_ok "$VP_SDK_DIR" "$hash"; then exit 0; fi
rm -rf "$VP_SDK_DIR"
mkdir -p "$variant"
ln -s "$VP_SYSROOT" "$variant/sysroot"
cat > "$bundle/info.json" <<JSON
{
  "schemaVersion": "1.0",
  "artifacts": {
    "$VP_SDK_NAME": {
      "type": "swiftSDK",
      "version": "$VP_SWIFT_VERSION_PREFIX",
      "variants": [ { "path": "aarch64-unknown-linux-gnu", "supportedTriples": ["x86_64-unknown-linux-gnu", "x86_64-pc-linux-gnu"] } ]
    }
  }
}
JSON
# Debian keeps the Swift resources under /usr/libexec/swift/lib.
cat > "$variant/swift-sdk.json" <<JSON
{
  "schemaVersion": "4.0",
  "targetTriples": {
    "aarch64-unknown-linux-gnu": {
      "sdkRootPath": "sysroot",
      "swiftResourcesPath": "sysroot/usr/libexec/swift/lib/swift",
      "swiftStaticResourcesPath": "sysroot/usr/libexec/swift/lib/swift_static",
      "includeSearchPaths": ["sysroot/usr/include", "sysroot/usr/include/aarch64-linux-gnu"],
      "librarySearchPaths": ["sysroot/usr/lib/aarch64-linux-gnu", "sysroot/usr/libexec/swift/lib/swift/linux"],
      "toolsetPaths": ["toolset.json"]
    }
  }
}
JSON
# lld from swiftlang links for any target; binutils in the chroot only know amd64.
cat > "$variant/toolset.json" <<JSON
{
  "schemaVersion": "1.0",
  "swiftCompiler": { "extraCLIOptions": ["-use-ld=lld"] }
}
JSON
vp_stamp_write "$VP_SDK_DIR" "$hash"
