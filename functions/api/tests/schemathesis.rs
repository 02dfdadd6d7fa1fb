//! Property-based testing of the running API against its own OpenAPI document with
//! schemathesis: every check (server errors, status codes, content types, headers, response
//! schemas, negative-data rejection, positive-data acceptance, ignored auth, unsupported
//! methods), at least 100 examples per operation, zero failures allowed.

mod support;

use std::path::Path;
use std::process::Command;

use support::{TestApi, DEMO_TOKEN};
use tms_testkit::repo_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_failure() {
    let st = repo_root().join(".local/venv/bin/st");
    assert!(
        st.exists(),
        "schemathesis is not installed ({}): run `make test`, or `scripts/venv.sh test`",
        st.display()
    );
    let api = TestApi::start().await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let report = std::env::temp_dir().join(format!(
        "tms-schemathesis-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&report).expect("a scratch directory for schemathesis");
    let url = api.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .arg("--config-file")
            .arg(config)
            .args([
                "run",
                &format!("{url}/openapi.json"),
                "--checks",
                "all",
                "--max-examples",
                "100",
            ])
            .args(["--workers", "1", "--no-color"])
            .arg("--report-dir")
            .arg(report.join("report"))
            .current_dir(&report)
            .env("TMS_SCHEMATHESIS_TOKEN", DEMO_TOKEN)
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
}
