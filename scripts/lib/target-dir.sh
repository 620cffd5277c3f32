# Sourced: prints cargo's target directory as cargo itself resolves it
# (CARGO_TARGET_DIR, build.target-dir in .cargo/config.toml, or ./target),
# so scripts that run built binaries find them wherever they were built.
cargo_target_dir() {
    cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}
