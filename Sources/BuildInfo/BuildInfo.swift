/// What `--version` prints about the build.
public enum BuildInfo {
    /// The firmware's version.
    public static let version = "0.15.0"
    /// The git commit built (`-dirty` with uncommitted changes), from the GitCommit plugin.
    public static let commit = gitCommit
}
