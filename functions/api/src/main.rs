use lambda_http::lambda_runtime::{layers::TracingLayer, Runtime};
use lambda_http::Error;
use tms::adapters::aws;
use tms::config::Env;
use tms_api::outbox::Settle;
use tms_api::{build_state, router, Config};

// One thread. Under Lambda an environment serves one request at a time, and as a local server
// the create path now costs little CPU besides the database's: on two worker threads each
// request crossed threads (a wake-up, a context switch) between the socket, the pool and the
// outbox. Measured with `make bench`'s API run: 1 client 1,470 -> 1,700 creates/s (p50 0.65 ->
// 0.53 ms), 8 clients 0.11 -> 0.10 ms of CPU per create at the same rate. (With the SDK's SQS
// client, when a round's send cost more than a create, two threads had been faster.)
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tms::telemetry::init_logging();
    let config = Config::from_env(&Env::process())?;
    let aws = aws::load_config().await;
    let state = build_state(&config, &aws).await?;
    let outbox = state.outbox.clone();
    let app = router(state);
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        // What `lambda_http::run` builds, with the outbox settled after each response.
        return Runtime::new(lambda_http::Adapter::from(app))
            .layer(Settle::new(outbox))
            .layer(TracingLayer::new())
            .run()
            .await;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    tracing::info!(url = %format!("http://127.0.0.1:{}", config.port), "serving the API");
    axum::serve(listener, app).await?;
    Ok(())
}
