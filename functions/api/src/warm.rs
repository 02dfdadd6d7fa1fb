//! [`WarmUp`]: under Lambda, the first event of a cold start also starts
//! [`AppState::warm_up`] beside it, so the database connection opens while the request reads
//! the token map. Started by the first event rather than at init: work spawned at init ran
//! before the runtime's first poll and doubled the init time.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use lambda_http::tower::{Layer, Service};

use crate::AppState;

/// See the module documentation.
#[derive(Clone)]
pub struct WarmUp {
    state: Arc<Mutex<Option<AppState>>>,
}

impl WarmUp {
    pub fn new(state: AppState) -> Self {
        Self {
            state: Arc::new(Mutex::new(Some(state))),
        }
    }

    /// The state to warm, the first time only.
    fn take(&self) -> Option<AppState> {
        self.state
            .lock()
            .expect("the warm-up's state is never poisoned")
            .take()
    }
}

impl<S> Layer<S> for WarmUp {
    type Service = Warming<S>;

    fn layer(&self, inner: S) -> Warming<S> {
        Warming {
            inner,
            warm_up: self.clone(),
        }
    }
}

/// See [`WarmUp`].
#[derive(Clone)]
pub struct Warming<S> {
    inner: S,
    warm_up: WarmUp,
}

impl<S, R> Service<R> for Warming<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        if let Some(state) = self.warm_up.take() {
            tokio::spawn(async move { state.warm_up().await });
        }
        self.inner.call(request)
    }
}
