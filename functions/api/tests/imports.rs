//! The import routes over real HTTP: presigned uploads into the emulator's bucket, and
//! tenant-scoped import status.

mod support;

use serde_json::json;
use support::{json, problem, TestApi, ACME_TOKEN, DEMO_TOKEN};
use tms::ports::{ImportClaim, ImportOutcome, ImportStore, NewImport};
use tms::{CorrelationId, ImportCounts, ImportFormat, ImportId};
use tms_testkit::tasks::tenant;

#[tokio::test]
async fn a_presigned_url_uploads_under_the_tenants_prefix() {
    let api = TestApi::start().await;
    let resp = api
        .post(
            "/v1/imports",
            DEMO_TOKEN,
            &json!({"filename": "2026/März orders.csv.gz", "size_bytes": 10}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let upload = json(resp).await;
    let url = reqwest::Url::parse(upload["upload_url"].as_str().unwrap()).unwrap();
    let signed = url
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-SignedHeaders")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(
        signed.split(';').any(|h| h == "content-length"),
        "the upload size is signed: {signed}"
    );
    assert_eq!(upload["key"], "imports/demo/2026/März orders.csv.gz");
    assert_eq!(upload["method"], "PUT");
    assert_eq!(upload["bucket"], api.bucket.as_str());
    let put = api
        .http
        .put(upload["upload_url"].as_str().unwrap())
        .body("kind\nnoop\n")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let stored = api
        .s3
        .get_object()
        .bucket(&api.bucket)
        .key("imports/demo/2026/März orders.csv.gz")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stored.body.collect().await.unwrap().into_bytes().as_ref(),
        b"kind\nnoop\n"
    );
}

#[tokio::test]
async fn upload_urls_are_signed_only_for_files_within_the_size_limit() {
    let api = TestApi::start_with(support::Options {
        max_upload_bytes: Some(1024),
        ..Default::default()
    })
    .await;
    for size in [
        json!(0),
        json!(1025),
        json!(u64::MAX),
        json!(-1),
        json!(null),
    ] {
        let p = problem(
            api.post(
                "/v1/imports",
                DEMO_TOKEN,
                &json!({"filename": "a.csv", "size_bytes": size}),
            )
            .send()
            .await
            .unwrap(),
            422,
        )
        .await;
        let pointer = p["errors"][0]["pointer"].as_str().unwrap_or_default();
        assert!(
            pointer.is_empty() || pointer == "/size_bytes",
            "{size}: {p}"
        );
        if size == json!(1025) {
            assert!(p.to_string().contains("1024"), "the limit is named: {p}");
        }
    }
    let p = problem(
        api.post("/v1/imports", DEMO_TOKEN, &json!({"filename": "a.csv"}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert!(p.to_string().contains("size_bytes"), "{p}");
    let ok = api
        .post(
            "/v1/imports",
            DEMO_TOKEN,
            &json!({"filename": "a.csv", "size_bytes": 1024}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn filenames_outside_the_rules_are_refused() {
    let api = TestApi::start().await;
    for name in [
        "../acme/x.csv",
        "/abs.csv",
        "x.exe",
        "a//b.csv",
        ".hidden.csv",
        "back\\slash.csv",
    ] {
        let p = problem(
            api.post(
                "/v1/imports",
                DEMO_TOKEN,
                &json!({"filename": name, "size_bytes": 1}),
            )
            .send()
            .await
            .unwrap(),
            422,
        )
        .await;
        assert_eq!(p["errors"][0]["pointer"], "/filename", "{name}");
    }
    problem(
        api.post(
            "/v1/imports",
            DEMO_TOKEN,
            &json!({"filename": "a.csv", "size_bytes": 1, "tenant": "acme"}),
        )
        .send()
        .await
        .unwrap(),
        422,
    )
    .await;
}

async fn finished_import(api: &TestApi, tenant_name: &str, key: &str) -> ImportId {
    let new = NewImport {
        id: ImportId::new(),
        tenant: tenant(tenant_name),
        bucket: api.bucket.clone(),
        key: key.into(),
        version: "v1".into(),
        format: ImportFormat::Csv,
        compressed: false,
        correlation_id: CorrelationId::generate(),
    };
    let ImportClaim::Started { import, session } = api.store.begin(&new).await.unwrap() else {
        panic!("new")
    };
    let outcome = ImportOutcome {
        counts: ImportCounts {
            total: 3,
            accepted: 2,
            rejected: 1,
            created: 2,
        },
        report_key: Some("reports/x.report.json".into()),
        errors_key: None,
        error: None,
    };
    session.finish(&outcome).await.unwrap();
    import.id
}

#[tokio::test]
async fn imports_are_listed_and_read_per_tenant() {
    let api = TestApi::start().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(finished_import(&api, "demo", &format!("imports/demo/{i}.csv")).await);
    }
    let foreign = finished_import(&api, "acme", "imports/acme/x.csv").await;
    ids.reverse();
    let page = json(
        api.get("/v1/imports?limit=2", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let first: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first, [ids[0].to_string(), ids[1].to_string()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = json(
        api.get(&format!("/v1/imports?limit=2&cursor={cursor}"), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(rest["items"][0]["id"], ids[2].to_string());
    assert!(rest["next_cursor"].is_null());
    let one = json(
        api.get(&format!("/v1/imports/{}", ids[0]), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (
            one["status"].as_str(),
            one["rows_accepted"].as_u64(),
            one["rows_rejected"].as_u64()
        ),
        (Some("completed"), Some(2), Some(1))
    );
    problem(
        api.get(&format!("/v1/imports/{foreign}"), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(
        api.get(&format!("/v1/imports/{foreign}"), ACME_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    problem(
        api.get(&format!("/v1/imports?cursor={cursor}"), ACME_TOKEN)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        api.get("/v1/imports/nope", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
}
