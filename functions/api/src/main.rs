use lambda_http::lambda_runtime::{layers::TracingLayer, Runtime};
use lambda_http::Error;
use tms::adapters::aws;
use tms::config::Env;
use tms_api::outbox::Settle;
use tms_api::warm::WarmUp;
use tms_api::{build_state, router, Config};

// One thread: under Lambda an environment serves one request at a time, and as a local server
// the create path costs little CPU besides the database's (BENCHMARKS.md has the measurement).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::process())?;
    let aws = aws::load_config().await;
    let mut state = build_state(&config, &aws).await?;
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        // What `lambda_http::run` builds, with the outbox settled after each response and the
        // first event opening the database connection beside it.
        state.outbox = state.outbox.collecting();
        let outbox = state.outbox.clone();
        let warm = state.clone();
        let app = router(state);
        return Runtime::new(lambda_http::Adapter::from(app))
            .layer(Settle::new(outbox))
            .layer(WarmUp::new(warm))
            .layer(TracingLayer::new())
            .run()
            .await;
    }
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    tracing::info!(url = %format!("http://127.0.0.1:{}", config.port), "serving the API");
    axum::serve(listener, app).await?;
    Ok(())
}
