//! The generated professionals' sessions. Each signs in on her first request and keeps her
//! token for the rest of the run; when the hub has ended her session meanwhile, she signs in
//! again and the request goes once more. A run of hours leaves an author without a post for
//! longer than the hub's idle timeout (30 minutes by default): session 34's 10,000,000-post run
//! stopped on the first such post.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use kizuna_proto::accounts::LoginRequest;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use tonic::transport::Channel;

/// The generated professionals' password (they are test data: the hub is a benchmark's).
pub(super) const PASSWORD: &str = "kizuna-generated-2026";

/// The signed-in professionals of one run (see the module's doc).
pub struct Staff {
    channels: Vec<Channel>,
    run: String,
    /// Session tokens by professional index.
    tokens: Mutex<HashMap<usize, String>>,
    sign_ins: AtomicU64,
}

impl Staff {
    /// The professionals of run `run` (the generator's state names it), signing in through
    /// `channels` (one chosen by the professional's index).
    pub fn new(channels: Vec<Channel>, run: &str) -> Self {
        Self { channels, run: run.to_owned(), tokens: Mutex::default(), sign_ins: AtomicU64::new(0) }
    }

    /// Professional `professional`'s login.
    pub fn login(&self, professional: usize) -> String {
        format!("g{}.{professional}", self.run)
    }

    /// How many times a professional signed in so far.
    pub fn sign_ins(&self) -> u64 {
        self.sign_ins.load(Ordering::Relaxed)
    }

    /// `request` with `professional`'s token; once more with a new one if the hub answered
    /// that her session has ended. `request` must be safe to send twice: its writes carry
    /// idempotency keys.
    pub async fn signed_in<T, F, Fut>(&self, professional: usize, request: F) -> anyhow::Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        match request(self.token(professional).await?).await {
            Err(e) if session_ended(&e) => {
                self.forget(professional)?;
                request(self.token(professional).await?).await
            }
            answered => answered,
        }
    }

    /// `professional`'s token, signing her in if she has none yet.
    pub async fn token(&self, professional: usize) -> anyhow::Result<String> {
        if let Some(token) = self.tokens()?.get(&professional) {
            return Ok(token.clone());
        }
        let req = LoginRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            login: self.login(professional),
            password: PASSWORD.into(),
            device: "kizuna generate".into(),
            ..Default::default()
        };
        let channel = self.channels.get(professional % self.channels.len().max(1)).context("no node to sign in at")?;
        let token = AccountServiceClient::new(channel.clone()).login(req).await?.into_inner().token;
        self.sign_ins.fetch_add(1, Ordering::Relaxed);
        self.tokens()?.insert(professional, token.clone());
        Ok(token)
    }

    /// Forgets `professional`'s session: her next [`Self::token`] signs in.
    fn forget(&self, professional: usize) -> anyhow::Result<()> {
        self.tokens()?.remove(&professional);
        Ok(())
    }

    fn tokens(&self) -> anyhow::Result<std::sync::MutexGuard<'_, HashMap<usize, String>>> {
        self.tokens.lock().map_err(|_| anyhow::anyhow!("a worker failed"))
    }
}

/// Whether the hub refused a request because its session has ended (or never was).
fn session_ended(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>().is_some_and(|s| s.code() == tonic::Code::Unauthenticated)
}
