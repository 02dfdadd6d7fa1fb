//! A mainstream client generator takes the OpenAPI document whole: openapi-python-client
//! generates a client with a function for every operation, and says nothing it had to skip.

use std::process::Command;

use tms_testkit::repo_root;

/// What openapi-python-client names an operation's module: its id in snake case.
fn module_name(operation_id: &str) -> String {
    operation_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn python_files(dir: &std::path::Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("the generated client") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            python_files(&path, found);
        } else if let Some(stem) = path
            .extension()
            .filter(|e| *e == "py")
            .and(path.file_stem())
        {
            found.push(stem.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn openapi_python_client_generates_every_operation() {
    let tool = repo_root().join(".local/venv/bin/openapi-python-client");
    assert!(
        tool.exists(),
        "openapi-python-client is not installed ({}): run `make test`, or `scripts/venv.sh test`",
        tool.display()
    );
    let doc = tms_api::openapi::document();
    let scratch =
        std::env::temp_dir().join(format!("tms-client-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    let path = scratch.join("openapi.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).expect("write the document");
    let output = Command::new(&tool)
        .arg("generate")
        .arg("--path")
        .arg(&path)
        .arg("--output-path")
        .arg(scratch.join("client"))
        .args(["--meta", "none"])
        .output()
        .expect("run openapi-python-client");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the generator failed:\n{said}");
    for skipped in ["WARNING", "Unable to", "will not be generated"] {
        assert!(
            !said.contains(skipped),
            "the generator skipped part of the document:\n{said}"
        );
    }
    let mut modules = Vec::new();
    python_files(&scratch.join("client"), &mut modules);
    let operations: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| module_name(op["operationId"].as_str().expect("an operationId")))
        .collect();
    assert_eq!(operations.len(), 13, "{operations:?}");
    let missing: Vec<&String> = operations
        .iter()
        .filter(|op| !modules.contains(op))
        .collect();
    assert!(missing.is_empty(), "no client function for {missing:?}");
    let _ = std::fs::remove_dir_all(&scratch);
}
