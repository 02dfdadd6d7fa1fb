//! The SQS, S3 and SSM adapters against the AWS emulator.

use std::time::Duration;

use tms::adapters::s3::S3ObjectStore;
use tms::adapters::sqs::{SqsWorkQueue, REASON_ATTRIBUTE};
use tms::adapters::ssm::SsmSecrets;
use tms::ports::{Dispatch, ObjectStore, Secrets, SecretsError, WorkQueue};
use tms::{CorrelationId, TaskId, WorkMessage, CORRELATION_ATTRIBUTE};
use tms_testkit::aws::{put_secure_parameter, sdk_config, test_bucket, TestQueue};
use tms_testkit::tasks::tenant;

fn dispatch(delay: Duration) -> Dispatch {
    Dispatch {
        message: WorkMessage {
            task_id: TaskId::new(),
            tenant: tenant("demo"),
            correlation_id: CorrelationId::generate(),
        },
        delay,
        priority: tms::Priority::Normal,
    }
}

#[tokio::test]
async fn sends_work_pointers_in_batches_with_the_correlation_attribute() {
    let aws = sdk_config().await;
    let q = TestQueue::new(&aws, None).await;
    let queue = SqsWorkQueue::new(q.client.clone(), &q.url);
    let dispatches: Vec<_> = (0..25).map(|_| dispatch(Duration::ZERO)).collect();
    let mut sent = queue.send(&dispatches).await.unwrap();
    sent.sort();
    let mut want: Vec<_> = dispatches.iter().map(|d| d.message.task_id).collect();
    want.sort();
    assert_eq!(sent, want, "all 25 accepted across three batches");
    let received = q.drain(&q.url, 25).await;
    assert_eq!(received.len(), 25);
    for m in received {
        let msg: WorkMessage = serde_json::from_str(m.body().unwrap()).unwrap();
        let original = dispatches
            .iter()
            .find(|d| d.message.task_id == msg.task_id)
            .unwrap();
        assert_eq!(msg, original.message);
        let attr = m
            .message_attributes()
            .unwrap()
            .get(CORRELATION_ATTRIBUTE)
            .unwrap();
        assert_eq!(attr.string_value(), Some(msg.correlation_id.as_str()));
    }
}

#[tokio::test]
async fn a_delayed_message_stays_invisible_until_due() {
    let aws = sdk_config().await;
    let q = TestQueue::new(&aws, None).await;
    let queue = SqsWorkQueue::new(q.client.clone(), &q.url);
    queue
        .send(&[dispatch(Duration::from_secs(3))])
        .await
        .unwrap();
    let early = q
        .client
        .receive_message()
        .queue_url(&q.url)
        .send()
        .await
        .unwrap();
    assert!(
        early.messages.unwrap_or_default().is_empty(),
        "not visible before its delay"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(q.drain(&q.url, 1).await.len(), 1);
}

#[tokio::test]
async fn dead_letter_carries_the_reason() {
    let aws = sdk_config().await;
    let q = TestQueue::new(&aws, Some(5)).await;
    let dlq = q.dlq_url.clone().unwrap();
    let queue = SqsWorkQueue::new(q.client.clone(), &q.url).with_dead_letter_queue(&dlq);
    queue
        .dead_letter("not json", "malformed: expected value")
        .await
        .unwrap();
    let got = q.drain(&dlq, 1).await;
    assert_eq!(got[0].body(), Some("not json"));
    let reason = got[0]
        .message_attributes()
        .unwrap()
        .get(REASON_ATTRIBUTE)
        .unwrap();
    assert_eq!(reason.string_value(), Some("malformed: expected value"));
    let without = SqsWorkQueue::new(q.client.clone(), &q.url);
    assert!(without.dead_letter("x", "y").await.is_err());
}

#[tokio::test]
async fn an_unreachable_queue_is_an_error_not_a_silent_success() {
    let aws = sdk_config().await;
    let q = TestQueue::new(&aws, None).await;
    let missing = format!("{}-missing", q.url);
    let queue = SqsWorkQueue::new(q.client.clone(), missing);
    assert!(queue.send(&[dispatch(Duration::ZERO)]).await.is_err());
}

#[tokio::test]
async fn puts_objects_in_the_bucket() {
    let aws = sdk_config().await;
    let (client, bucket) = test_bucket(&aws).await;
    let store = S3ObjectStore::new(client.clone(), &bucket);
    store
        .put(
            "emails/2026/11/22/x.json",
            b"{\"a\":1}".to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    let got = client
        .get_object()
        .bucket(&bucket)
        .key("emails/2026/11/22/x.json")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/json"));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"{\"a\":1}"
    );
    let missing = S3ObjectStore::new(client, format!("{bucket}-missing"));
    assert!(missing.put("k", vec![], "text/plain").await.is_err());
}

#[tokio::test]
async fn reads_secure_parameters_decrypted() {
    let aws = sdk_config().await;
    let name = format!("/test/{}/secret", uuid::Uuid::new_v4().simple());
    put_secure_parameter(&aws, &name, "s3cret value").await;
    let secrets = SsmSecrets::new(aws_sdk_ssm::Client::new(&aws));
    assert_eq!(secrets.get(&name).await.unwrap().expose(), "s3cret value");
    assert!(matches!(
        secrets.get("/test/missing/x").await,
        Err(SecretsError::NotFound(_))
    ));
}

/// A TCP proxy to the emulator that cuts its first connection after `cut` bytes of answer, as a
/// server does with a connection its client stopped reading from.
async fn cutting_proxy(cut: usize) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tms_testkit::aws::emulator_url()
        .trim_start_matches("http://")
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let first = connections.fetch_add(1, Ordering::SeqCst) == 0;
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(async move {
                let mut sent = 0;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let n = if first {
                        n.min(cut.saturating_sub(sent))
                    } else {
                        n
                    };
                    if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                }
                // Dropping both halves closes the connection mid-body.
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_read_goes_on_across_a_broken_connection_from_the_next_byte() {
    let aws = sdk_config().await;
    let (client, bucket) = test_bucket(&aws).await;
    let data: Vec<u8> = (0..(1024 * 1024u32)).map(|i| (i % 251) as u8).collect();
    client
        .put_object()
        .bucket(&bucket)
        .key("imports/demo/big.jsonl")
        .body(data.clone().into())
        .send()
        .await
        .unwrap();
    let via_proxy = aws
        .to_builder()
        .endpoint_url(cutting_proxy(200 * 1024).await)
        .build();
    let store = S3ObjectStore::new(tms::adapters::s3::client(&via_proxy), &bucket);
    let mut reader = store.open("imports/demo/big.jsonl", None).await.unwrap();
    assert_eq!(reader.size, Some(data.len() as u64));
    let mut read = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader.body, &mut read)
        .await
        .expect("the read resumes");
    assert_eq!(read.len(), data.len());
    assert!(read == data, "every byte once, in order");
}

#[tokio::test]
async fn a_work_message_carries_the_invocation_trace_so_api_and_worker_traces_link() {
    // Inside a Lambda function (`AWS_LAMBDA_FUNCTION_NAME`) lambda_runtime sets
    // `_X_AMZN_TRACE_ID` for each invocation; the SDK sends it as `X-Amzn-Trace-Id`, and SQS
    // hands it to the consumer as the message's `AWSTraceHeader` system attribute. The
    // emulator does not do that last step, so this endpoint records what the SDK sent.
    let trace = "Root=1-67a0b1c2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1";
    std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "tms-api");
    std::env::set_var("_X_AMZN_TRACE_ID", trace);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let app = axum::Router::new()
        .fallback({
            let seen = seen.clone();
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let trace = headers
                    .get("x-amzn-trace-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                seen.lock().unwrap().push(trace.to_owned());
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let ok: Vec<_> = request["Entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| serde_json::json!({"Id": e["Id"], "MessageId": "m", "MD5OfMessageBody": "0"}))
                    .collect();
                (
                    [("content-type", "application/x-amz-json-1.0")],
                    serde_json::json!({"Successful": ok, "Failed": []}).to_string(),
                )
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let aws = sdk_config()
        .await
        .into_builder()
        .endpoint_url(&endpoint)
        .build();
    let queue = SqsWorkQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        format!("{endpoint}/000000000000/work"),
    );
    queue.send(&[dispatch(Duration::ZERO)]).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [trace]);
}
