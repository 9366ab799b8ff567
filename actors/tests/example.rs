//! The embedding example runs and prints the lifecycle events it saw.

#[test]
fn lifecycle_example_prints_its_events() {
    // `cargo test` builds examples next to the test binaries: target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|p| p.join("examples").join("lifecycle"))
        .unwrap();
    assert!(
        bin.exists(),
        "example binary not built at {}",
        bin.display()
    );
    let out = std::process::Command::new(&bin).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "demo Defined",
        "demo Started",
        "demo Stopped (detail 1)",
        "demo Undefined",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
