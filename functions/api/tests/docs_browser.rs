//! `/docs` in a real browser (headless Chromium): the interactive reference renders every
//! operation from the binary's own assets, and "Try it out" calls the API with the token the
//! reader authorised with.

mod support;

use support::{json, noop, TestApi, DEMO_TOKEN};
use tms_testkit::browser::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_lists_every_operation_and_tries_one_out_with_a_token() {
    let api = TestApi::start().await;
    let task = json(api.create(&noop()).await).await;
    let id = task["id"].as_str().unwrap().to_owned();
    let browser = Browser::start(1280, 1000).await;

    browser.open(&format!("{}/docs", api.url), ".opblock").await;
    let listed = browser.text("#reference").await;
    for path in ["/v1/tasks/batch", "/v1/tasks/{id}/redrive", "/v1/imports"] {
        assert!(listed.contains(path), "{path} is not listed:\n{listed}");
    }

    // Authorize with a token, as a reader does once per tab.
    browser
        .wait_for(".btn.authorize")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for(".auth-container input")
        .await
        .send_keys(DEMO_TOKEN)
        .await
        .unwrap();
    browser
        .wait_for(".auth-btn-wrapper .authorize")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for(".btn-done").await.click().await.unwrap();

    // Try GET /v1/tasks out: the live response lists the task created above.
    let operation = "#operations-tasks-list_tasks";
    browser
        .wait_for(&format!("{operation} .opblock-summary"))
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for(&format!("{operation} .execute"))
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for(&format!(
            "{operation} .live-responses-table .response-col_status"
        ))
        .await;
    let status = browser
        .text(&format!(
            "{operation} .live-responses-table .response .response-col_status"
        ))
        .await;
    assert_eq!(status.trim(), "200", "the call succeeded with the token");
    let body = browser
        .text(&format!(
            "{operation} .live-responses-table .response .response-col_description"
        ))
        .await;
    assert!(body.contains(&id), "the response shows the task:\n{body}");
    browser
        .scroll_to(&format!("{operation} .live-responses-table .response"))
        .await;
    browser.screenshot("docs-try-it-out").await;
    browser.close().await;
}
