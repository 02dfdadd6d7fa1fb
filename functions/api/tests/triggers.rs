//! The trigger routes over real HTTP against the real database.

mod support;

use serde_json::{json, Value};
use support::{json, problem, TestApi, ACME_TOKEN, DEMO_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN};

fn paid_orders() -> Value {
    json!({
        "name": "paid orders",
        "source": "shop.orders",
        "detail_type": "Order Placed",
        "detail_match": {"pointer": "/status", "equals": "paid"},
        "task": {"kind": "webhook", "max_attempts": 3, "payload": {
            "url": "https://partner.example/orders",
            "body": {"order": {"$event": "/detail/orderId"}, "event": {"$event": "/id"}}
        }}
    })
}

#[tokio::test]
async fn triggers_are_registered_listed_read_and_removed_within_the_tenant() {
    let api = TestApi::start().await;
    let created = api
        .post("/v1/triggers", DEMO_TOKEN, &paid_orders())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let trigger = json(created).await;
    assert_eq!(trigger["tenant"], "demo");
    assert_eq!(
        trigger["detail_match"],
        json!({"pointer": "/status", "equals": "paid"})
    );
    assert_eq!(trigger["task"]["max_attempts"], 3);
    let id = trigger["id"].as_str().unwrap().to_owned();

    let again = api
        .post("/v1/triggers", DEMO_TOKEN, &paid_orders())
        .send()
        .await
        .unwrap();
    problem(again, 409).await;
    let theirs = api
        .post("/v1/triggers", ACME_TOKEN, &paid_orders())
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 201, "names are per tenant");

    let list = json(api.get("/v1/triggers", DEMO_TOKEN).send().await.unwrap()).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());
    let every = json(
        api.get("/v1/triggers", OPERATOR_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        every["items"].as_array().unwrap().len(),
        2,
        "an operator sees every tenant's"
    );

    let one = api
        .get(&format!("/v1/triggers/{id}"), VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200, "a viewer reads");
    problem(
        api.get(&format!("/v1/triggers/{id}"), ACME_TOKEN)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    problem(
        api.post("/v1/triggers", VIEWER_TOKEN, &paid_orders())
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let viewer_delete = api
        .http
        .delete(format!("{}/v1/triggers/{id}", api.url))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    problem(viewer_delete, 403).await;
    let deleted = api
        .http
        .delete(format!("{}/v1/triggers/{id}", api.url))
        .bearer_auth(DEMO_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    problem(
        api.get(&format!("/v1/triggers/{id}"), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test]
async fn an_invalid_trigger_is_a_problem_naming_each_field() {
    let api = TestApi::start().await;
    let mut bad = paid_orders();
    bad["name"] = json!("");
    bad["detail_match"]["pointer"] = json!("status");
    bad["task"]["max_attempts"] = json!(0);
    bad["task"]["payload"]["body"]["order"] = json!({"$event": "detail/orderId"});
    let p = problem(
        api.post("/v1/triggers", DEMO_TOKEN, &bad)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        [
            "/name",
            "/detail_match/pointer",
            "/task/payload/body/order",
            "/task/max_attempts"
        ]
    );
    let mut unknown = paid_orders();
    unknown["task"]["kind"] = json!("fax");
    problem(
        api.post("/v1/triggers", DEMO_TOKEN, &unknown)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
}
