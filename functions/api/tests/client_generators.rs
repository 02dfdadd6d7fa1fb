//! Mainstream client generators take the OpenAPI document whole: openapi-python-client
//! generates a client with a function for every operation and says nothing it had to skip;
//! openapi-typescript generates types for every operation, and tsc type-checks them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tms_testkit::repo_root;

/// The document, written into a scratch directory of its own: (the directory, the file).
fn document_file(doc: &Value) -> (PathBuf, PathBuf) {
    let scratch =
        std::env::temp_dir().join(format!("tms-client-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    let path = scratch.join("openapi.json");
    std::fs::write(&path, serde_json::to_vec(doc).unwrap()).expect("write the document");
    (scratch, path)
}

/// Every operation's id.
fn operation_ids(doc: &Value) -> Vec<String> {
    let ids: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| {
            op["operationId"]
                .as_str()
                .expect("an operationId")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 38, "{ids:?}");
    ids
}

/// Runs `command`, which must succeed; what it printed.
fn run(command: &mut Command) -> String {
    let output = command.output().expect("run the tool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{said}");
    said
}

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

fn python_files(dir: &Path, found: &mut Vec<String>) {
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
    let (scratch, path) = document_file(&doc);
    let said = run(Command::new(&tool)
        .arg("generate")
        .arg("--path")
        .arg(&path)
        .arg("--output-path")
        .arg(scratch.join("client"))
        .args(["--meta", "none"]));
    for skipped in ["WARNING", "Unable to", "will not be generated"] {
        assert!(
            !said.contains(skipped),
            "the generator skipped part of the document:\n{said}"
        );
    }
    let mut modules = Vec::new();
    python_files(&scratch.join("client"), &mut modules);
    let missing: Vec<String> = operation_ids(&doc)
        .iter()
        .map(|id| module_name(id))
        .filter(|module| !modules.contains(module))
        .collect();
    assert!(missing.is_empty(), "no client function for {missing:?}");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn openapi_typescript_generates_types_that_type_check() {
    let bin = repo_root().join(".local/node/node_modules/.bin");
    let (generator, tsc) = (bin.join("openapi-typescript"), bin.join("tsc"));
    assert!(
        generator.exists() && tsc.exists(),
        "openapi-typescript is not installed ({}): run `make test`, or `scripts/node.sh`",
        generator.display()
    );
    let doc = tms_api::openapi::document();
    let (scratch, path) = document_file(&doc);
    let types = scratch.join("api.d.ts");
    run(Command::new(&generator).arg(&path).arg("-o").arg(&types));
    let text = std::fs::read_to_string(&types).expect("the generated types");
    for id in operation_ids(&doc) {
        assert!(
            text.contains(&format!("{id}: {{")),
            "no type for operation {id}"
        );
    }
    run(Command::new(&tsc)
        .args(["--noEmit", "--strict"])
        .arg(&types));
    let _ = std::fs::remove_dir_all(&scratch);
}
