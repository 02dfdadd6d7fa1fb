use lambda_http::lambda_runtime::{layers::TracingLayer, Runtime};
use lambda_http::Error;
use tms::adapters::aws;
use tms::config::Env;
use tms_api::outbox::Settle;
use tms_api::{build_state, router, Config};

// Worker threads: the outbox sends a create's work message after its response, on whichever
// worker is free, while the next request is already being read. On one thread that send's CPU
// held the next request back (8 clients: 1,669 creates/s on one thread, 2,417 on two).
#[tokio::main]
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
